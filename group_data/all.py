# The one source of truth: every logical model LiteLLM serves, and where it comes from.
#
# Each entry is keyed by the plain LiteLLM model name clients use. Fields (see README, "Data keys"):
#   backend   "mlx" (an mlx_lm.server on `host`), "ovms" (OpenVINO Model Server on `host`),
#             or "openai" (any external OpenAI-compatible base URL given in `api_base`)
#   host      inventory host that runs the server (mlx, ovms)
#   port      the server's port (mlx only; OVMS listens on ovms_rest_port)
#   upstream  the model id the upstream server knows; LiteLLM routes to it as openai/<upstream>
#   api_base  external backends only: the OpenAI-compatible base URL
#   api_key_secret  optional: the name of the secret (environment or secrets file) holding the
#             upstream's API key; local backends need none
#   env_prefix  optional: prefix of the env.local names (default: the model name upper-cased, - -> _)
#   max_tokens  mlx, optional: the server's completion length when a request names none
#             (default mlx_max_tokens)
#   start_timeout  mlx, optional: seconds the deploy waits for the server to load the model after a
#             (re)start (default mlx_start_timeout); the weights are fetched before, not in this wait
#   serves    optional: another entry's name: this entry is one more deployment of that model, and
#             LiteLLM balances the requests for that name across them
#   fallbacks optional: model names LiteLLM answers from, in order, when this one fails (once its
#             retries are spent), e.g. the studio's models fall back to the mini's lil-jerry
#   source    ovms: where the model's OpenVINO files come from: a Hugging Face repo id of a
#             pre-converted model ("org/name", pulled by OVMS on the host), or an absolute path
#             to such a folder on the control machine (uploaded)
#   graph     ovms, optional: graph.pbtxt settings over the host's ovms_graph (device,
#             cache_size, max_num_seqs, enable_prefix_caching), and the model's own tool_parser
#             (OVMS's name for its tool-call format: hermes3, llama3, phi4, mistral, gptoss,
#             qwen3coder; it needs ovms_python) and enable_tool_guided_generation
#
# Only jerry-chat's and lil-jerry's upstream ids come from the operator's notes; the other MLX
# ids are examples to replace with what the studio really serves.
llm_models = {
    "jerry-chat": {
        "backend": "mlx",
        "host": "studio",
        "port": 8100,
        "upstream": "halley-ai/gpt-oss-120b-MLX-6bit-gs64",
        "start_timeout": 900,  # about 95 GB of weights to load
        "fallbacks": ["lil-jerry"],
    },
    "jerry-editor": {
        "backend": "mlx",
        "host": "studio",
        "port": 8101,
        "upstream": "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit",
        "fallbacks": ["lil-jerry"],
    },
    "jerry-architect": {
        "backend": "mlx",
        "host": "studio",
        "port": 8102,
        "upstream": "mlx-community/Qwen3-Next-80B-A3B-Instruct-4bit",
        "start_timeout": 600,  # about 45 GB
        "fallbacks": ["lil-jerry"],
    },
    "jerry-weak": {
        "backend": "mlx",
        "host": "studio",
        "port": 8103,
        "upstream": "mlx-community/Llama-3.2-3B-Instruct-4bit",
        "fallbacks": ["lil-jerry"],
    },
    "jerry-test": {
        "backend": "mlx",
        "host": "studio",
        "port": 8109,
        "upstream": "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
    },
    "lil-jerry": {
        "backend": "ovms",
        "host": "mini",
        "upstream": "llama-3-2-3b-instruct",
        # Meta's licence keeps Llama 3.2 out of the OpenVINO organisation's pre-converted models;
        # this is a community int4 export. An OpenVINO/*-int4-ov repo or a folder of your own
        # export works the same way.
        "source": "EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov",
        # Llama 3.2 calls tools in Llama 3's JSON format: OVMS's llama3 parser reads its calls.
        "graph": {"tool_parser": "llama3"},
    },
}

# Per-model field overrides layered over llm_models (a lab or staging data folder sets these,
# so that it need not copy the whole registry).
llm_model_overrides = {}

# Where secrets come from when they are not in the operator's environment: an untracked
# KEY=VALUE file, relative to the directory pyinfra runs in. Never commit it.
llm_secrets_file = "secrets.env"
