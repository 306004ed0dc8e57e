"""The bottom layer: helpers every app may import; imports no app of the project (docs/architecture.md)."""
