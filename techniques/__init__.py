"""Fine-tuning techniques (plugins). Each technique lives in its own module and talks to the
trainer only through the hook interface; see the technique issue for the registry."""
