"""flowertune-app: a FlowerTune-style LoRA app with flwr-trust added in two lines."""
