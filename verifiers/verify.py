"""The one entry point: verify(component, property, options) -> Result."""
