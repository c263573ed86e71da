"""A1111's `lora` module (its built-in Lora extension kept it for older extensions): the LoRA names of networks."""
from modules.networks import networks

list_available_loras = networks.list_available_networks
available_loras = networks.available_networks
available_lora_aliases = networks.available_network_aliases
available_lora_hash_lookup = networks.available_network_hash_lookup
forbidden_lora_aliases = networks.forbidden_network_aliases
loaded_loras = networks.loaded_networks
