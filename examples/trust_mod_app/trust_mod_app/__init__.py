"""trust-mod-app: a minimal FlowerTune-style LoRA app with flwr-trust's client mod."""
