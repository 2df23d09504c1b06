# The studio (macOS, launchd; a Linux host runs the same servers under systemd).

mlx_lm_version = "0.32.2"
# "mlx" on Apple silicon; on Linux mlx runs on the CPU from the "mlx[cpu]" build.
mlx_version = "0.32.4"
mlx_user = "mlx"  # Linux only: the unprivileged user the servers run as
mlx_home = "/opt/mlx"  # its uv environment lives in venv/, logs in logs/ (macOS)
# The servers' working directory: a model id that exists here as a folder is loaded from it,
# any other id is fetched from the Hugging Face hub by mlx_lm itself on first start.
mlx_models_dir = "/opt/mlx/models"
# Model folders on the control machine to upload to <mlx_models_dir>/<upstream id>, keyed by
# upstream id (the lab uses this for its generated tiny model; the real studio needs none).
mlx_model_sources = {}
mlx_bind_address = "0.0.0.0"  # LiteLLM on the mini reaches the servers over the LAN
mlx_max_tokens = 512  # mlx_lm.server --max-tokens: the default completion length
mlx_start_timeout = 120
mlx_launchd_prefix = "lab.llm.mlx"  # launchd labels are <prefix>.<model name>
