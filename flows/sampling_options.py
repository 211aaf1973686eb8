"""Sampling options in a generator's grid config (``generator_config: {dermgan: {balance_skin_tone:
true}}``): they shape the synthetic *training* images, not the model, so they are kept out of the
training request (the model stays the same job) and go on the training mix's sample requests instead.

``balance_skin_tone`` (DermGAN only, issue 18): the training mix's tones are drawn uniformly over the
six ITA categories (Del Bino & Bernerd 2013) instead of from the real training set's tones, so the report's
skin-tone section can show whether tone-balanced synthetic data narrows the gap between categories.
The evaluation set (compared with real images) keeps the training distribution unless it *is* the mix.
"""

from __future__ import annotations

from typing import Any

# option -> the generators that take it
SAMPLING_OPTIONS: dict[str, tuple[str, ...]] = {"balance_skin_tone": ("dermgan",)}


def training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The generator's grid config without the sampling options (what its training request carries)."""
    return {key: value for key, value in config.items() if key not in SAMPLING_OPTIONS}


def sampling_conditioning(config: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """``({"balance_skin_tone": True},)`` when asked for, else ``()`` (the same sample request as without
    the option, so the same job)."""
    return ({"balance_skin_tone": True},) if config.get("balance_skin_tone") else ()


def check_sampling_options(generator_config: dict[str, Any]) -> list[str]:
    """Problems with the sampling options of a grid's ``generator_config`` (empty when fine)."""
    problems = []
    for generator, config in generator_config.items():
        if not isinstance(config, dict):
            continue
        for option, takers in SAMPLING_OPTIONS.items():
            if option not in config:
                continue
            if generator not in takers:
                problems.append(f"generator_config.{generator}.{option}: only {', '.join(takers)} takes it")
            elif not isinstance(config[option], bool):
                problems.append(
                    f"generator_config.{generator}.{option}: true or false, got {config[option]!r}"
                )
    return problems
