"""The prompts of sgl_frontend_client.py, importable without sglang (the tests check its answers)."""

SELECT_PROMPT = "Q: Which colour is the sky?\nA:"  # its last two characters differ: no token healing
CHOICES = [" blue", " green", " a red one", " grey"]
LOGPROB_PROMPT = "Q: Count: one, two,\nA:"
LOGPROB_START = 3  # logprob_start_len of the client's gen(return_logprob=True)
TOP_LOGPROBS = 3
