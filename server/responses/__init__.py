"""OpenAI's Responses API (``/v1/responses``), served by translating to the chat engine."""
