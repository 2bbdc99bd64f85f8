"""The main jobs of xrl as library functions; the ``xrl`` command (:mod:`xrl.cli`) is a thin layer over them.

==========================================  =========================================================================
job                                         function
==========================================  =========================================================================
CFRL on MNIST (seed 000)                    :func:`xrl.jobs.cfrl_mnist.run`
CFRL on UCI Adult (seed 001)                :func:`xrl.jobs.cfrl_adult.run`
train an IMPALA PPO agent (resumable)       :func:`xrl.jobs.agents.train`
evaluate / bundle an agent                  :func:`xrl.jobs.agents.evaluate`
RL-vision walk-through figures (seed 003)   :func:`xrl.jobs.vision.walkthrough`
train a DreamerV2 world model               :func:`xrl.jobs.worldmodel.train`
explain world-model latents (seed 002)      :func:`xrl.jobs.worldmodel.explain`
one report of everything                    :func:`xrl.report.build_report`
==========================================  =========================================================================

Every job writes its files under an output folder, returns a JSON-able summary (also written there), takes its
randomness from a ``seed`` argument, and leaves process-wide state (threads, global RNGs, the matplotlib backend)
as it found it.
"""
