"""Reference networks: MNIST classifier/autoencoder, CFRL actor/critic, tabular HeAE, IMPALA CNN."""
from ._registry import MODEL_REGISTRY, build_model, model_spec, register
from .cfrl import Actor, Critic
from .impala import ImpalaBlock, ImpalaCNN, ImpalaModel, ResidualBlock
from .policy import CategoricalPolicyGM
from .mnist import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_
from .tabular import (ADULTDecoder, ADULTEncoder, HeAE, HeAETrainConfig, TabularDecoder, TabularEncoder, heae_loss,
                      train_heae)

__all__ = ["AE", "Actor", "Critic", "MNISTClassifier", "MNISTDecoder", "MNISTEncoder", "glorot_init_",
           "HeAE", "HeAETrainConfig", "TabularEncoder", "TabularDecoder", "ADULTEncoder", "ADULTDecoder", "heae_loss",
           "train_heae", "ImpalaCNN", "CategoricalPolicyGM", "ImpalaModel", "ImpalaBlock", "ResidualBlock", "MODEL_REGISTRY", "build_model", "model_spec", "register"]
