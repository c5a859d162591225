"""Chat: the OpenAI wire models, the chat service that relays to the engine, and its routes."""
