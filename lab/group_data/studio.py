# Lab overrides for the studio: its models' weights are fetched from the lab's stand-in hub
# (lab/hfhub.py, on the gateway) by snapshot_download, as a Mac fetches them from Hugging Face;
# jerry-test's copy of the tiny model is uploaded from this machine instead (the other way in).
from lab import hfhub, paths

mlx_hf_endpoint = hfhub.endpoint()
mlx_model_sources = {"lab/tiny-llama-upload": str(paths.TINY_MODEL)}
