"""Bottom layer (docs DESIGN): helpers every app may import; imports no app."""
