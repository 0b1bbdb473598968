"""First-party LLM backends for steerkit (transformers, vllm, openai), registered through the
``steerkit`` entry-point group like any third-party plugin."""
