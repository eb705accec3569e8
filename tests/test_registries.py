"""Registering under a name that another definition holds is an error unless replace=True."""

import dataclasses

import pytest

from noisesearch import NoiseSearchError
from noisesearch.backends import Backend, get_backend, register_backend
from noisesearch.backends import registry as backend_registry
from noisesearch.rewards import registry as reward_registry
from noisesearch.rewards.registry import register_reward, reward_factory
from noisesearch.sampling import registry as sampler_registry
from noisesearch.sampling.registry import make_sampler, register_sampler
from noisesearch.search import registry as algorithm_registry
from noisesearch.search.registry import algorithm_class, register_algorithm


@pytest.fixture(autouse=True)
def scratch_registries(monkeypatch):
    """Each test registers into copies of the four registries."""
    for module, attr in ((reward_registry, "_REWARDS"), (algorithm_registry, "_ALGORITHMS"),
                         (sampler_registry, "_SAMPLERS"), (backend_registry, "_BACKENDS")):
        monkeypatch.setattr(module, attr, dict(getattr(module, attr)))


def refused(kind, name):
    return pytest.raises(NoiseSearchError, match=f"a {kind} named '{name}' is already registered.*replace=True")


def algorithm_named(name, base=None):
    """A new algorithm class each call, all with the same module and qualified name (as a module re-imported)."""
    base = base or algorithm_class("naive")
    return type("Scratch", (base,), {"name": name, "__qualname__": "Scratch"})


def test_algorithms_refuse_a_taken_name_unless_replace():
    naive = algorithm_class("naive")
    other = type("Other", (naive,), {"__qualname__": "Other"})
    with refused("algorithm", "naive"):
        register_algorithm(other)
    with refused("algorithm", "naive"):
        register_algorithm()(other)
    assert algorithm_class("naive") is naive
    assert register_algorithm(other, replace=True) is other and algorithm_class("naive") is other
    again = type("Again", (naive,), {"__qualname__": "Again"})
    assert register_algorithm(replace=True)(again) is again and algorithm_class("naive") is again


def test_algorithm_decorator_forms_and_re_registration():
    @register_algorithm
    class Fresh(algorithm_class("naive")):
        name = "fresh_scratch"

    assert algorithm_class("fresh_scratch") is Fresh
    assert register_algorithm(Fresh) is Fresh  # the same class again
    reimported = algorithm_named("reimported_scratch")
    register_algorithm(reimported)
    twin = algorithm_named("reimported_scratch")
    assert twin is not reimported and register_algorithm(twin) is twin and algorithm_class("reimported_scratch") is twin


def test_rewards_refuse_a_taken_name_unless_replace():
    brightness = reward_factory("brightness")

    class Dim:
        """A different reward."""

    with refused("reward", "brightness") as info:
        register_reward("brightness")(Dim)
    assert "\n" not in str(info.value) and "rewards.brightness.Brightness" in str(info.value)
    assert reward_factory("brightness") is brightness
    assert register_reward("brightness")(brightness) is brightness  # a module imported twice
    assert register_reward("brightness", replace=True)(Dim) is Dim and reward_factory("brightness") is Dim


def test_samplers_refuse_a_taken_name_unless_replace():
    heun, description = sampler_registry._SAMPLERS["heun"]

    def mine(steps: int = 18, **settings):
        return heun(steps, **settings)

    with refused("sampler", "heun"):
        register_sampler("heun", "mine")(mine)
    assert sampler_registry._SAMPLERS["heun"][0] is heun
    register_sampler("heun", description)(heun)
    register_sampler("heun", "mine", replace=True)(mine)
    assert sampler_registry._SAMPLERS["heun"] == (mine, "mine") and make_sampler("heun", 4).steps == 4


def test_backends_refuse_a_taken_name_unless_replace():
    embedded = get_backend("embedded")
    other = dataclasses.replace(embedded, load=lambda request: None)
    with refused("backend", "embedded"):
        register_backend(other)
    assert get_backend("embedded") is embedded
    assert register_backend(embedded) is embedded  # the same backend again
    assert register_backend(dataclasses.replace(embedded, description="same loader")).load is embedded.load
    assert register_backend(other, replace=True) is other and get_backend("embedded") is other


def test_every_error_is_one_line_and_says_how_to_replace():
    class Dim:
        pass

    for register in (lambda: register_reward("compressibility")(Dim),
                     lambda: register_algorithm(type("X", (algorithm_class("beam"),), {"name": "naive"})),
                     lambda: register_sampler("euler", "x")(lambda steps=18: None),
                     lambda: register_backend(Backend(name="edm", description="x", load=lambda r: None))):
        with pytest.raises(NoiseSearchError, match="pass replace=True to replace it, or choose another name") as info:
            register()
        assert "\n" not in str(info.value)
