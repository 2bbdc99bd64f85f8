"""The seed notebooks' code cells run on xrl with their imports changed and the adaptations of docs/migration.md.

Each test below is a seed's cells in order, as written, except the lines marked ``# ADAPTED (n)``, whose number is the
item in that seed's list in docs/migration.md. Data paths point at bundled models or at small files written here.
"""
import numpy as np
import pytest
import torch


@pytest.fixture
def seed_globals(monkeypatch, tmp_path):
    """The cells change process state as notebooks do (grad mode, global seed, cwd files): undo it afterwards."""
    monkeypatch.chdir(tmp_path)
    grad = torch.is_grad_enabled()
    with torch.random.fork_rng(devices=[]):
        yield tmp_path
    torch.set_grad_enabled(grad)


@pytest.mark.slow
def test_seed_000_cfrl_mnist_cells(seed_globals):
    from typing import Dict

    import matplotlib.pyplot as plt

    from xrl.counterfactual import Callback, CounterfactualRL
    from xrl.datasets import load_mnist
    from xrl.models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder
    from xrl.models.training import predict_batched, train_model
    from xrl.render import as_image

    torch.manual_seed(0)                                               # (the test: a fixed initialization)
    (X_train, Y_train), (X_test, Y_test) = load_mnist()               # ADAPTED (1): channels first, in [0, 1]
    X_train, Y_train = X_train[:1000], Y_train[:1000]                 # (small sizes for the test)
    NUM_CLASSES = 10
    EPOCHS = 1
    classifier = MNISTClassifier(output_dim=NUM_CLASSES)
    train_model(classifier, X_train, Y_train, epochs=EPOCHS, progress=False)           # ADAPTED (2)
    accuracy = (predict_batched(classifier, X_test[:500]).argmax(1) == Y_test[:500]).mean()   # ADAPTED (2)
    assert accuracy > 0.5

    def predictor(X: np.ndarray):
        Y = classifier(torch.as_tensor(X)).detach().numpy()          # ADAPTED (3)
        return Y

    LATENT_DIM = 64
    ae = AE(encoder=MNISTEncoder(latent_dim=LATENT_DIM), decoder=MNISTDecoder())
    train_model(ae, X_train, None, epochs=EPOCHS, progress=False)                     # ADAPTED (2)
    NUM_SAMPLES = 5
    np.random.seed(0)
    indices = np.random.choice(X_test.shape[0], NUM_SAMPLES)
    inputs = [X_test[i].reshape(1, 1, 28, 28) for i in indices]       # ADAPTED (4)
    inputs = np.concatenate(inputs, axis=0)
    inputs_hat = ae(torch.as_tensor(inputs)).detach().numpy()         # ADAPTED (3)
    fig, ax = plt.subplots(2, NUM_SAMPLES, figsize=(25, 10))
    for i in range(NUM_SAMPLES):
        ax[0][i].imshow(as_image(inputs[i]), cmap="gray")              # ADAPTED (6)
        ax[1][i].imshow(as_image(inputs_hat[i]), cmap="gray")          # ADAPTED (6)
    plt.close(fig)

    COEFF_SPARSITY, COEFF_CONSISTENCY, TRAIN_STEPS, BATCH_SIZE = 7.5, 0, 40, 100      # (40 steps for the test)
    explainer = CounterfactualRL(predictor=predictor, encoder=ae.encoder, decoder=ae.decoder, latent_dim=LATENT_DIM,
                                 coeff_sparsity=COEFF_SPARSITY, coeff_consistency=COEFF_CONSISTENCY,
                                 train_steps=TRAIN_STEPS, batch_size=BATCH_SIZE, backend="pytorch")  # ADAPTED (5)
    explainer = explainer.fit(X=X_train)
    explanation = explainer.explain(X_test[0:200], Y_t=np.array([2]), batch_size=100)
    fig, ax = plt.subplots(2, NUM_SAMPLES, figsize=(25, 10))
    for i in range(NUM_SAMPLES):
        ax[0][i].imshow(as_image(explanation.data["orig"]["X"][i]), cmap="gray")       # ADAPTED (6)
        ax[1][i].imshow(as_image(explanation.data["cf"]["X"][i]), cmap="gray")         # ADAPTED (6)
        ax[0][i].set_xlabel("Label: " + str(explanation.data["orig"]["class"][i]))
        ax[1][i].set_xlabel("Label: " + str(explanation.data["cf"]["class"][i]))
    plt.close(fig)

    logged = []                                                        # (wandb.log -> a list, no account)

    class RewardCallback(Callback):
        def __call__(self, step: int, update: int, model: CounterfactualRL, sample: Dict[str, np.ndarray],
                     losses: Dict[str, float]):
            if step % 20 != 0:
                return
            X_cf, Y_t = sample["X_cf"], sample["Y_t"]
            Y_m_cf = predictor(X_cf)
            reward = np.mean(model.params["reward_func"](Y_m_cf, Y_t))
            logged.append({"reward": reward})

    class LossCallback(Callback):
        def __call__(self, step, update, model, sample, losses):
            if (step + update) % 20 == 0:
                logged.append(losses)

    explainer = CounterfactualRL(predictor=predictor, encoder=ae.encoder, decoder=ae.decoder, latent_dim=LATENT_DIM,
                                 coeff_sparsity=COEFF_SPARSITY, coeff_consistency=COEFF_CONSISTENCY,
                                 train_steps=TRAIN_STEPS, batch_size=BATCH_SIZE, backend="pytorch",  # ADAPTED (5)
                                 callbacks=[RewardCallback(), LossCallback()])
    explainer.fit(X=X_train)
    # alibi's schedule: updates (and callbacks) from step update_after + 1 = 11, so of 40 steps only step 20 logs
    assert [sorted(row)[0] for row in logged] == ["reward", "actor_loss"]


def test_seed_002_world_model_cells(seed_globals):
    import matplotlib.pyplot as plt

    from xrl.envs import GymMinAtar, OneHotAction, freewayPOMDP
    from xrl.worldmodel import Evaluator, MinAtarConfig, RSSMDiscState

    env_name = "freeway"
    device = "cpu"                                                    # ADAPTED (1): no GPU here
    rank = 10
    ACTIONS = {0: "STAY", 1: "UP", 2: "DOWN"}

    env = freewayPOMDP(OneHotAction(GymMinAtar(env_name)))
    config = MinAtarConfig(env=env_name, obs_shape=env.observation_space.shape,
                           action_size=env.action_space.shape[0], obs_dtype=bool, action_dtype=np.float32,
                           model_dir="models", eval_episode=10, eval_render=False)
    evaluator = Evaluator(config, device)
    evaluator.load_model(evaluator.config, "freeway_pomdp")           # ADAPTED (2): the bundled world model

    score = 0
    done = False
    history = []
    torch.set_grad_enabled(False)
    env = freewayPOMDP(OneHotAction(GymMinAtar(env_name)))
    torch.manual_seed(313)
    obs, _ = env.reset(seed=212)                                      # ADAPTED (3): gymnasium's reset(seed=)
    prev_rssm_state = evaluator.RSSM._init_rssm_state(batch_size=1)
    prev_action = torch.zeros(1, evaluator.action_size).to(evaluator.device)
    for _ in range(config.seq_len):
        embed = evaluator.ObsEncoder(torch.tensor(obs, dtype=torch.float32).unsqueeze(0).to(evaluator.device))
        _, posterior_rssm_state = evaluator.RSSM.rssm_observe(embed, prev_action, not done, prev_rssm_state)
        model_state = evaluator.RSSM.get_model_state(posterior_rssm_state)
        action, _ = evaluator.ActionModel(model_state)
        history.append((obs, RSSMDiscState(posterior_rssm_state.logit.cpu().squeeze(0).reshape(20, 20),
                                           posterior_rssm_state.stoch.cpu().squeeze(0).reshape(20, 20),
                                           posterior_rssm_state.deter.cpu().squeeze(0)),
                        action.squeeze(0).cpu().numpy(),
                        env.unwrapped.game.env.move_timer == 0))     # ADAPTED (4): the move timer's path
        obs, reward, terminated, truncated, _ = env.step(action.squeeze(0).cpu().numpy())  # ADAPTED (3)
        done = terminated or truncated                                # ADAPTED (3)
        score += reward
        prev_rssm_state = posterior_rssm_state
        prev_action = action
    assert len(history) == config.seq_len == 50

    # NMF cell, ADAPTED (5): the seed's cell reshapes an undefined `logits`, factorises signed logits and
    # multiplies [N, r] by [r, K]; xrl.nmf.NMF on the probabilities with the documented activity formula
    from xrl.nmf import NMF

    logits_list = torch.stack([state[1].logit for state in history], dim=0).to(device)
    probs = logits_list.reshape(-1, config.rssm_info.category_size).softmax(-1).numpy()     # [L*C, K]
    model = NMF(n_components=rank, seed=0)
    W = model.fit_transform(probs)
    activations = np.linalg.norm(W * np.linalg.norm(model.components_, axis=1), axis=1).reshape(-1, 20)
    activations = activations / activations.max()
    assert activations.shape == (50, 20)

    def render_freeway(obs):
        buf = np.zeros((10, 10, 3), dtype=np.uint8)
        buf[obs[0].astype(bool)] = (255, 255, 255)                   # ADAPTED (6): float observations
        buf[obs[1].astype(bool)] = (255, 0, 0)
        return buf

    history = history[:6]                                             # (a shorter figure for the test)
    fig, axs = plt.subplots(len(history), 4, figsize=(12, 3 * len(history)))
    axs[0, 0].set_title("Environment $o_t$")
    for t, axs_row in enumerate(axs):
        obs, posterior_rssm_state, action, has_effect = history[t]
        ax = axs_row[0]
        ax.imshow(render_freeway(obs))
        ax.legend([], loc="upper right", title=(f"Next {ACTIONS[action.argmax()]}" if has_effect
                                                else f"Next ({ACTIONS[action.argmax()]})"))
        axs_row[1].imshow(posterior_rssm_state.logit.softmax(-1).numpy(), vmin=0, vmax=1)
        e = torch.distributions.Categorical(logits=posterior_rssm_state.logit).entropy().sum().item()
        axs_row[1].legend([], loc="upper right", title=f"H {e:.3f}")
        axs_row[2].imshow(posterior_rssm_state.stoch.numpy(), vmin=0, vmax=1)
        # ADAPTED (7): the seed's stoch / stoch * activations is NaN where stoch is 0 and mixes shapes
        axs_row[3].imshow(posterior_rssm_state.stoch.numpy() * activations[t][:, None], vmin=0, vmax=1)
    fig.tight_layout()
    fig.savefig("freeway_example-based.png")
    plt.close(fig)


def _imitation_file(path, n_traj=2, steps=90):
    """An `imitation` .npz of CoinRun-sized frames (HWC uint8), as seed 003's trajectory file."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (n_traj * (steps + 1), 64, 64, 3), dtype=np.uint8)
    np.savez_compressed(path, obs=obs, acts=rng.integers(0, 15, n_traj * steps),
                        infos=np.array([{}] * (n_traj * steps), dtype=object),
                        terminal=np.ones(n_traj, bool), indices=np.cumsum([steps] * (n_traj - 1)))


@pytest.mark.slow
def test_seed_003_rl_vision_cells(seed_globals):
    from collections import OrderedDict
    from copy import deepcopy

    from xrl.agents import flatten_trajectories, load_expert_trajs
    from xrl.pretrained import load_pretrained
    from xrl.vision import (CategoricalPolicyGM, ImpalaModel, LayerNMF, ParameterEditor, conv2d, get_abbreviator,
                            get_acts, get_attr, get_model_layers, get_var, norm_filter, show, zoom_to)

    _imitation_file(seed_globals / "001-60eps.npz")
    trajectories_path = str(seed_globals / "001-60eps.npz")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_state_dict = load_pretrained("coinrun").state_dict()       # ADAPTED (1): bundled weights, no pickle
    embedder = ImpalaModel(in_channels=3)
    model = CategoricalPolicyGM(embedder=embedder, action_size=model_state_dict["fc_policy.weight"].shape[0])
    model.load_state_dict(model_state_dict)
    value_function_name = "fc_value"
    trajectories = load_expert_trajs(trajectories_path, n_expert_demos=None)
    trajectories = flatten_trajectories(trajectories)
    observations = trajectories.obs
    observations = np.transpose(observations, (0, 3, 1, 2))
    layer_names = get_model_layers(model)
    abbreviator = get_abbreviator(layer_names)
    layer_names = OrderedDict([(name[abbreviator], name) for name in layer_names])
    print(", ".join(layer_names.keys()))
    print(model)
    show(zoom_to(trajectories.obs[:8], 200))

    model.eval()
    layer = "embedder_relu_after_convs"
    nmf = LayerNMF(model, layer, observations[:1024], features=4, attr_layer_name=value_function_name)
    assert tuple(nmf.channel_dirs.shape) == (4, 32)
    show(zoom_to(nmf.vis_traditional(steps=16), 200))                 # (fewer steps for the test)
    show([zoom_to(nmf.vis_dataset_thumbnail(i, num_mult=4, expand_mult=4, max_rep=np.inf)[0], 200).transpose(1, 2, 0)
          for i in range(nmf.features)])
    show(zoom_to(nmf.vis_dataset(1, subdiv_mult=1, expand_mult=4)[0], 800))
    value_functions = get_acts(model, value_function_name, observations[:8])
    show(zoom_to(observations[:8], 200), labels=[f"{v:.3f}" for v in value_functions])

    traj = trajectories["observations"][0][76:84]
    attr = get_attr(model, value_function_name, layer_names["embedder_block2"], traj,   # ADAPTED (2): '2b'
                    integrate_steps=10)
    attr_reduced = nmf.transform(np.maximum(attr, 0)) - nmf.transform(np.maximum(-attr, 0))
    nmf_norms = nmf.channel_dirs.sum(-1)
    attr_reduced *= nmf_norms[None, None, None]
    attr_reduced /= np.median(attr_reduced.max(axis=(-3, -2, -1)))
    attr_pos = np.maximum(attr_reduced, 0)
    attr_neg = np.maximum(-attr_reduced, 0)
    show(zoom_to(traj, 200))
    show(zoom_to(conv2d(attr_pos, filter_=norm_filter(15)), 200))
    show(zoom_to(conv2d(attr_neg, filter_=norm_filter(15)), 200))

    edited_model = deepcopy(model)
    editor = ParameterEditor(edited_model.graph_def)
    kernel_name = "embedder.block3.conv.weight"                       # ADAPTED (2): layer_names["3a"]...
    kernel = editor[kernel_name]
    saw_dir = nmf.channel_dirs[0][None, None, :, None]
    saw_dir /= np.linalg.norm(saw_dir)
    kernel = kernel - saw_dir * (saw_dir * kernel).sum(axis=-2, keepdims=True)
    editor[kernel_name] = kernel
    before, after = np.linalg.norm(get_var(model, kernel_name)), np.linalg.norm(get_var(edited_model, kernel_name))
    assert after < before
    attr = get_attr(edited_model, value_function_name, layer_names["embedder_block2"], traj, integrate_steps=10)
    assert attr.shape[0] == 8 and device in ("cpu", "cuda")
