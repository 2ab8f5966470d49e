"""pymdbn: multimodal deep belief networks explained by layer-wise relevance propagation."""
