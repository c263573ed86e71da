"""`<lora:name:weight>` tags (also `<lyco:...>`): te/unet weights, dyn dim, the missing-network message, `Lora hashes`."""
from __future__ import annotations

import logging

from modules.extra_networks import ExtraNetwork, ExtraNetworkParams
from modules.networks import networks

log = logging.getLogger(__name__)
_NO_SEPARATORS = str.maketrans("", "", ":,")


def tag_weights(params: ExtraNetworkParams) -> tuple[str, float, float, int | None]:
    """name, te weight, unet weight, dyn dim of `<lora:name[:te[:unet[:dyn]]]>` or `<lora:name:te=..:unet=..:dyn=..>`."""
    if not params.positional:
        raise ValueError("a <lora:...> tag without a name")
    name = params.positional[0]
    try:
        te = float(params.positional[1]) if len(params.positional) > 1 else 1.0
        te = float(params.named.get("te", te))
        unet = float(params.positional[2]) if len(params.positional) > 2 else te
        unet = float(params.named.get("unet", unet))
        dyn = int(params.positional[3]) if len(params.positional) > 3 else None
        dyn = int(params.named["dyn"]) if "dyn" in params.named else dyn
    except ValueError as e:
        raise ValueError(f"<lora:{':'.join(params.items)}>: weights must be numbers ({e})") from e
    return name, te, unet, dyn


class ExtraNetworkLora(ExtraNetwork):
    def __init__(self):
        super().__init__("lora")

    def activate(self, p, params_list: list[ExtraNetworkParams]) -> None:
        parsed = []
        for params in params_list:
            try:
                parsed.append(tag_weights(params))
            except ValueError as e:  # a bad tag is reported and left out; the job's other networks still apply
                p.comment(str(e))
        missing, errors = networks.load_networks(p.sd_model, [n for n, _, _, _ in parsed], [t for _, t, _, _ in parsed],
                                                 [u for _, _, u, _ in parsed], [d for _, _, _, d in parsed])
        if missing:
            message = f"Lora not found: {', '.join(missing)}"
            log.warning(message)
            p.comment(message)
        if errors:
            p.comment("Networks with errors: " + ", ".join(f"{name} ({count})" for name, count in errors.items()))
        hashes = {net.mentioned_name.translate(_NO_SEPARATORS): net.network_on_disk.shorthash
                  for net in networks.loaded_networks if net.network_on_disk.shorthash and net.mentioned_name}
        if hashes:
            p.extra_generation_params["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in hashes.items())

    def deactivate(self, p) -> None:
        """Merged weights stay until a job asks for another set: the same networks next time cost nothing."""
