"""Explain Stable-Baselines3 policies: load a PPO/A2C ``.zip`` into a module with named layers, logits and a value.

The returned :class:`SB3Policy` follows the xrl agent protocol, ``policy(obs) -> (logits [B, A], value [B])``, and
re-registers SB3's pieces under readable names::

    features_extractor        SB3's (shared) features extractor (NatureCNN ``features_extractor.cnn.0`` ..., custom)
    pi_features_extractor /   only when SB3 used separate extractors (``share_features_extractor=False``)
    vf_features_extractor
    mlp_extractor.policy_net  the policy MLP trunk
    mlp_extractor.value_net   the value MLP trunk
    fc_policy                 SB3's ``action_net`` (logits)
    fc_value                  SB3's ``value_net`` (value head)

Observations are preprocessed exactly as SB3 does (``preprocess_obs``: images scaled by 1/255 when SB3 normalised
them). Only discrete action spaces are supported (logits).

SB3 ``.zip`` files contain pickled Python objects, and unpickling runs code. :func:`load_sb3_policy` therefore
unpickles nothing by default: it rebuilds the policy from the JSON part of the file and reads the weights with
``torch.load(weights_only=True)``; ``trust_pickle=True`` hands the file to SB3's own (unpickling) loader.
"""
from __future__ import annotations

import importlib
import io as _io
import json
import pickle
import random
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import init_rng, resolve_device
from .._validation import error_message
from ..io import load_state_strict


class SB3Policy(nn.Module):
    """An SB3 ``ActorCriticPolicy`` re-wrapped as ``policy(obs) -> (logits [B, A], value [B])``."""

    def __init__(self, sb3_policy: Any):
        super().__init__()
        from gymnasium import spaces

        if not isinstance(sb3_policy.action_space, spaces.Discrete):
            raise ValueError(error_message("policy.action_space", "a Discrete action space (policy logits)",
                                           sb3_policy.action_space))
        self.observation_space = sb3_policy.observation_space
        self.normalize_images = bool(getattr(sb3_policy, "normalize_images", True))
        self.share_features_extractor = bool(getattr(sb3_policy, "share_features_extractor", True))
        if self.share_features_extractor:
            self.features_extractor = sb3_policy.features_extractor
        else:
            self.pi_features_extractor = sb3_policy.pi_features_extractor
            self.vf_features_extractor = sb3_policy.vf_features_extractor
        self.mlp_extractor = sb3_policy.mlp_extractor
        self.fc_policy = sb3_policy.action_net
        self.fc_value = sb3_policy.value_net
        self.obs_shape = tuple(self.observation_space.shape)
        self.num_actions = int(sb3_policy.action_space.n)
        self.action_names = None

    def _prepare(self, obs: Any) -> torch.Tensor:
        from stable_baselines3.common.preprocessing import preprocess_obs

        device = self.fc_value.weight.device
        if not isinstance(obs, torch.Tensor):
            obs = torch.as_tensor(np.asarray(obs))
        if tuple(obs.shape[1:]) != self.obs_shape:
            dims = ", ".join(map(str, self.obs_shape))
            raise ValueError(f"obs: expected a batch of shape [B, {dims}] (the SB3 policy's observation space), "
                             f"got shape {tuple(obs.shape)}")
        return preprocess_obs(obs.to(device), self.observation_space, normalize_images=self.normalize_images).float()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._prepare(obs)
        if self.share_features_extractor:
            features = self.features_extractor(x)
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            latent_pi = self.mlp_extractor.forward_actor(self.pi_features_extractor(x))
            latent_vf = self.mlp_extractor.forward_critic(self.vf_features_extractor(x))
        return self.fc_policy(latent_pi), self.fc_value(latent_vf).squeeze(-1)


# ---- safe loading: the zip's JSON and its weights, never its pickles --------------------------------------------
_CLASS_REPR = re.compile(r"^<class '([\w.]+)'>$")
#: modules whose classes may be named in policy_kwargs (as class reprs in the JSON) and imported by name
_TRUSTED_MODULES = ("torch.nn.modules.", "torch.optim.", "stable_baselines3.common.torch_layers")
_POLICY_CLASSES = ("ActorCriticPolicy", "ActorCriticCnnPolicy")


class _NeedsPickle(ValueError):
    """The file names something that only its pickles describe."""


def _parse_array(text: str, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    """An array from numpy's ``str()`` (as SB3's JSON keeps Box bounds); summarised reprs (``...``) only when every
    shown value is the same."""
    tokens = text.replace("[", " ").replace("]", " ").split()
    size = int(np.prod(shape))
    shown = [t for t in tokens if t != "..."]
    if len(tokens) == size and "..." not in tokens:
        return np.array([float(t) for t in tokens], dtype=np.float64).astype(dtype).reshape(shape)
    if shown and len(set(shown)) == 1:
        return np.full(shape, float(shown[0]), dtype=np.float64).astype(dtype)
    raise _NeedsPickle(f"{what}: the bounds are only stored in full in the file's pickle")


def _space(entry: Any, what: str):
    from gymnasium import spaces

    if not isinstance(entry, dict):
        raise _NeedsPickle(f"{what}: missing from the file's JSON")
    kind = entry.get(":type:", "")
    if kind == "<class 'gymnasium.spaces.discrete.Discrete'>":
        return spaces.Discrete(int(entry["n"]), start=int(entry.get("start", 0)))
    if kind == "<class 'gymnasium.spaces.box.Box'>":
        shape = tuple(json.loads(entry["_shape"]) if isinstance(entry["_shape"], str) else entry["_shape"])
        dtype = np.dtype(entry["dtype"])
        low = _parse_array(entry["low"], shape, dtype, what + ".low")
        high = _parse_array(entry["high"], shape, dtype, what + ".high")
        return spaces.Box(low, high, shape, dtype)
    raise _NeedsPickle(f"{what}: a {kind or 'pickled'} space (xrl rebuilds Box observations and Discrete actions)")


def _resolve(value: Any, key: str, custom: dict[str, Any]) -> Any:
    """A policy_kwargs value from the JSON: class reprs of trusted modules are imported by name, others must come
    from ``custom_objects``; nested dicts and lists are resolved item by item."""
    if key in custom:
        return custom[key]
    if isinstance(value, dict):
        return {k: _resolve(v, k, custom) for k, v in value.items() if not k.startswith(":")}
    if isinstance(value, list):
        return [_resolve(v, key, custom) for v in value]
    if isinstance(value, str) and value.startswith("<"):
        match = _CLASS_REPR.match(value)
        if match and match.group(1).startswith(_TRUSTED_MODULES):
            module, _, name = match.group(1).rpartition(".")
            return getattr(importlib.import_module(module), name)
        raise _NeedsPickle(f"policy_kwargs[{key!r}] is {value}, which only the file's pickle describes; pass "
                           f"custom_objects={{{key!r}: <the object, imported by you>}}")
    return value


def _policy_class(entry: Any):
    from stable_baselines3.common import policies

    text = json.dumps(entry) if isinstance(entry, dict) else ""
    names = [n for n in _POLICY_CLASSES if f"<function {n}.__init__" in text]
    if not isinstance(entry, dict) or entry.get("__module__") != "stable_baselines3.common.policies" or not names:
        raise _NeedsPickle("policy_class: not one of SB3's " + " / ".join(_POLICY_CLASSES) + " (a custom or "
                           "multi-input policy is only described by the file's pickle)")
    return getattr(policies, names[-1])


def _load_safely(path: Path, custom: dict[str, Any]):
    """SB3's policy from the zip's ``data`` JSON and ``policy.pth`` (``torch.load(weights_only=True)``)."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if "data" not in names or "policy.pth" not in names:
            raise ValueError(f"{path}: not an SB3 .zip (expected 'data' and 'policy.pth', found {sorted(names)})")
        data = json.loads(zf.read("data").decode())
        weights = torch.load(_io.BytesIO(zf.read("policy.pth")), map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: 'data' is not a JSON object; not an SB3 .zip")
    policy_class = custom.get("policy_class") or _policy_class(data.get("policy_class"))
    observation_space = custom.get("observation_space") or _space(data.get("observation_space"), "observation_space")
    action_space = custom.get("action_space") or _space(data.get("action_space"), "action_space")
    kwargs = _resolve(data.get("policy_kwargs") or {}, "policy_kwargs", custom)
    kwargs.pop("device", None)
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):  # SB3 < 1.8 layout, as SB3 does
        kwargs["net_arch"] = net_arch[0]
    if data.get("use_sde"):
        raise ValueError(f"{path}: a policy with state-dependent exploration (use_sde); xrl loads discrete policies")
    with init_rng():  # the weights are overwritten: building must not consume the caller's RNG
        policy = policy_class(observation_space, action_space, lambda _progress: 0.0, use_sde=False, **kwargs)
    load_state_strict(policy, weights, f"{path} (policy.pth)")
    return policy


@contextmanager
def _global_rngs_kept():
    """Put back Python's, numpy's and torch's (CPU and CUDA) global RNG states on exit."""
    py_state, np_state = random.getstate(), np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with init_rng():
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def load_sb3_policy(path: str | Path, device: torch.device | str | None = None, algo: str = "PPO",
                    custom_objects: dict[str, Any] | None = None, *, trust_pickle: bool = False) -> SB3Policy:
    """Load a Stable-Baselines3 ``.zip`` (PPO or A2C, discrete actions) as an :class:`SB3Policy` in eval mode.

    By default nothing in the file is unpickled: the architecture is rebuilt from the JSON part of the zip's
    ``data`` (policy class, observation and action spaces, ``policy_kwargs``; activation, optimizer and SB3
    features-extractor classes are imported by name from torch and SB3 only) and the weights are read from
    ``policy.pth`` with ``torch.load(weights_only=True)``. What only the file's pickles describe (a custom features
    extractor class, a custom policy) is taken from ``custom_objects`` (objects you import yourself), or, with
    ``trust_pickle=True``, unpickled by SB3's own loader.

    Parameters
    ----------
    path : path
        The ``.zip`` written by ``model.save(path)`` (``.zip`` may be omitted).
    device : optional
        Where to put the policy (default CPU).
    algo : {"PPO", "A2C"}
        The algorithm that saved the file (used by SB3's loader with ``trust_pickle=True``).
    custom_objects : dict, optional
        Objects replacing what the file only holds as pickles, by name: ``policy_kwargs`` entries such as
        ``{"features_extractor_class": MyCNN}``, or ``"policy_class"``, ``"observation_space"``,
        ``"action_space"``. With ``trust_pickle=True`` passed to SB3's ``load``.
    trust_pickle : bool, default False
        Load with SB3's own loader, which UNPICKLES the file: this runs any code the file contains. Only for files
        you trust (that you wrote yourself, or from a source you trust as much as code you run).

    Raises
    ------
    FileNotFoundError for a missing file; ValueError for a corrupt file, one that is not an SB3 zip, or one that
    only its pickles describe (the message names the entry and the remedy).

    Examples
    --------
    >>> policy = load_sb3_policy("ppo_cartpole.zip")     # doctest: +SKIP
    >>> logits, value = policy(obs)
    """
    try:
        import stable_baselines3 as sb3
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError('loading SB3 policies needs stable-baselines3: pip install "xrl[sb3]"') from exc
    path = Path(path)
    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing SB3 .zip file, got {str(path)!r} (missing)")
    algos = {"PPO": sb3.PPO, "A2C": sb3.A2C}
    if algo not in algos:
        raise ValueError(error_message("algo", "one of 'PPO', 'A2C'", algo))
    dev = resolve_device(device)
    if not trust_pickle:
        try:
            policy = _load_safely(path, dict(custom_objects or {}))
        except _NeedsPickle as exc:
            raise ValueError(f"{path}: cannot be loaded without unpickling: {exc}; or pass trust_pickle=True if you "
                             "trust the file (unpickling runs code from it)") from None
        except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, KeyError, RuntimeError,
                pickle.UnpicklingError, EOFError) as exc:
            raise ValueError(f"{path}: could not be loaded as an SB3 {algo} model ({type(exc).__name__}: {exc}); "
                             "the file is corrupt or not an SB3 .zip") from exc
        return SB3Policy(policy).to(dev).eval()
    try:
        with _global_rngs_kept():  # SB3's loader reseeds Python's, numpy's and torch's global RNGs
            model = algos[algo].load(str(path), device=dev, custom_objects=custom_objects)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, RuntimeError, ... from a damaged file
        raise ValueError(f"{path}: could not load as an SB3 {algo} model ({type(exc).__name__}: {exc}); "
                         "the file is corrupt or not an SB3 .zip") from exc
    return SB3Policy(model.policy).to(dev).eval()
