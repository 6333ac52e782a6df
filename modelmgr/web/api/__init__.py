"""HTTP routes over the managers: REST, SSE, the jobs API and the OpenAI-compatible ``/v1``."""
