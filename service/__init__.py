"""The FastAPI prediction service (loads the registered champion; never imports training code)."""
