"""LoRA and LyCORIS networks (A1111's built-in Lora extension): files, layer types, weight patching, `<lora:...>`."""
