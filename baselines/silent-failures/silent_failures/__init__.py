"""silent-failures: federated LoRA fine-tuning under silent-failure scenarios, vs monitors."""
