"""Reference networks: MNIST classifier/autoencoder and the CFRL actor/critic (more are added per capability)."""
from ._registry import MODEL_REGISTRY, build_model, model_spec, register
from .cfrl import Actor, Critic
from .mnist import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_

__all__ = ["AE", "Actor", "Critic", "MNISTClassifier", "MNISTDecoder", "MNISTEncoder", "glorot_init_",
           "MODEL_REGISTRY", "build_model", "model_spec", "register"]
