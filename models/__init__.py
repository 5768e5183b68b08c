"""Model directories shipped inside the promofilter wheel (read with importlib.resources)."""
