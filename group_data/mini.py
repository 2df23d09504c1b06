# The mini (Linux, systemd): LiteLLM proxy and OpenVINO Model Server.

# --- LiteLLM -------------------------------------------------------------------------------
litellm_version = "1.106.2"  # litellm[proxy]; 1.107.0 was a compromised release, never use it
# LiteLLM's auth error path imports prisma; without it a missing key answers 500, not 401.
litellm_prisma_version = "0.15.0"
litellm_port = 4000
litellm_bind_address = "0.0.0.0"  # the proxy serves the LAN
litellm_user = "litellm"
litellm_home = "/opt/litellm"  # the service user's home: its uv environment lives in venv/
litellm_config_dir = "/etc/litellm"  # router.yaml, env.local
# The seed's router settings. retry_policy takes the exception names the operator wrote
# (Timeout, APIConnectionError, ...); the toolkit translates them to LiteLLM's RetryPolicy
# fields, which silently ignores any name it does not know.
litellm_router_settings = {
    "allowed_fails": 2,
    "cooldown_time": 15,
    "retry_policy": {
        "Timeout": 1,
        "APIConnectionError": 1,
        "RateLimitError": 0,
        "ServiceUnavailableError": 1,
    },
}
litellm_settings = {"json_logs": True}
# Seconds the deploy waits for the proxy to answer /health/liveliness after a restart.
litellm_start_timeout = 120

# --- uv (shared by every Python service) ----------------------------------------------------
uv_version = "0.13.9"

# --- OpenVINO Model Server ------------------------------------------------------------------
ovms_version = "2025.4"
# The official Ubuntu 24 build (C++ only). Its sha256 is not published beside the release and
# could not be computed where this toolkit was written: set it after `sha256sum` of the archive
# you trust. The preflight refuses to deploy OVMS without it.
ovms_archive_url = (
    "https://github.com/openvinotoolkit/model_server/releases/download/v2025.4/ovms_ubuntu24.tar.gz"
)
ovms_archive_sha256 = None
ovms_packages = ["libxml2", "curl"]  # what the release's binary links against, per its docs
ovms_rest_port = 9000
ovms_bind_address = "127.0.0.1"  # only LiteLLM, on the same host, talks to OVMS
ovms_user = "ovms"
ovms_home = "/opt/ovms"  # releases unpack into <home>/<version>/, <home>/current points at one
ovms_models_dir = "/var/lib/ovms/models"  # <dir>/<upstream id>/ holds each model's files
ovms_config_dir = "/etc/ovms"
ovms_start_timeout = 60
