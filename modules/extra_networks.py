"""Extra networks in prompts, `<kind:name:args>` (A1111's modules.extra_networks names).

Tags are removed from the prompts before encoding; the first prompt's tags apply to the whole batch. Each registered
ExtraNetwork is activated with its tags' parameters, and with none when it is not mentioned, so that it can undo what
an earlier job applied.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict

log = logging.getLogger(__name__)

extra_network_registry: dict[str, ExtraNetwork] = {}
extra_network_aliases: dict[str, ExtraNetwork] = {}
_defaults_registered = False

re_extra_net = re.compile(r"<(\w+):([^>]+)>")


class ExtraNetworkParams:
    """The `:`-separated arguments of one tag: positional ones, and `key=value` ones by name."""

    def __init__(self, items: list[str] | None = None):
        self.items = items or []
        self.positional: list[str] = []
        self.named: dict[str, str] = {}
        for item in self.items:
            key, sep, value = item.partition("=") if isinstance(item, str) else ("", "", "")
            if sep:
                self.named[key] = value
            else:
                self.positional.append(item)

    def __eq__(self, other) -> bool:
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    def __repr__(self) -> str:
        return f"ExtraNetworkParams({self.items!r})"


class ExtraNetwork:
    """A kind of tag (`lora`, `hypernet`, ...) and what it does to the model around a job."""

    def __init__(self, name: str):
        self.name = name

    def activate(self, p, params_list: list[ExtraNetworkParams]) -> None:
        """Apply the networks named by these tags to p.sd_model; an empty list removes what this kind applied."""
        raise NotImplementedError

    def deactivate(self, p) -> None:
        """Called after the job's sampling."""
        raise NotImplementedError


def register_extra_network(extra_network: ExtraNetwork) -> None:
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network: ExtraNetwork, alias: str) -> None:
    extra_network_aliases[alias] = extra_network


def register_default_extra_networks() -> None:
    """The built-in kinds: `lora` (alias `lyco`) and `hypernet`."""
    global _defaults_registered
    # imported here: those modules subclass ExtraNetwork from this one
    from modules.hypernetworks import ExtraNetworkHypernet
    from modules.networks.extra_networks_lora import ExtraNetworkLora

    lora = ExtraNetworkLora()
    register_extra_network(lora)
    register_extra_network_alias(lora, "lyco")
    register_extra_network(ExtraNetworkHypernet())
    _defaults_registered = True


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """The prompt without its tags, and kind -> the parameters of each tag of that kind."""
    found: dict[str, list[ExtraNetworkParams]] = defaultdict(list)

    def take(m: re.Match) -> str:
        found[m.group(1)].append(ExtraNetworkParams(items=m.group(2).split(":")))
        return ""

    return re_extra_net.sub(take, prompt), found


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    """Every prompt without its tags; the tags of the first prompt only (they apply to the whole batch)."""
    stripped, extra_data = [], None
    for prompt in prompts:
        text, data = parse_prompt(prompt)
        if extra_data is None:
            extra_data = data
        stripped.append(text)
    return stripped, extra_data or defaultdict(list)


def lookup_extra_networks(extra_network_data: dict) -> dict[ExtraNetwork, list[ExtraNetworkParams]]:
    """Tag kind -> its ExtraNetwork (aliases merged into their network); unknown kinds are logged and ignored."""
    res: dict[ExtraNetwork, list[ExtraNetworkParams]] = {}
    for name, params in extra_network_data.items():
        network = extra_network_registry.get(name) or extra_network_aliases.get(name)
        if network is None:
            log.info("Skipping unknown extra network: %s", name)
            continue
        res.setdefault(network, []).extend(params)
    return res


def activate(p, extra_network_data: dict) -> None:
    """Activate every registered kind: with its tags' parameters, or with none to undo an earlier job's networks."""
    if not _defaults_registered:
        register_default_extra_networks()
    activated = lookup_extra_networks(extra_network_data)
    for network in extra_network_registry.values():
        try:
            network.activate(p, activated.get(network, []))
        except Exception as e:  # one kind's failure (an extension's, a bad tag) must not stop the job, as in A1111
            log.exception("Activating extra network %s failed", network.name)
            p.comment(f"Extra network {network.name} failed: {e}")


def deactivate(p, extra_network_data: dict | None = None) -> None:
    """Every registered kind is told the job's sampling is over (the data is A1111's argument; all kinds are called)."""
    for network in extra_network_registry.values():
        try:
            network.deactivate(p)
        except Exception:
            log.exception("Deactivating extra network %s failed", network.name)
