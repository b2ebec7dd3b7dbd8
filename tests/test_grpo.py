"""GRPO: advantages, the clipped objective and the KL term against hand-computed values, rewards on
hand data, sampling through the trie against its exact distribution, and on tiny trained runs a
rewarded item gains probability and a validity reward cuts invalid IDs."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_SYNTHETIC
from test_decoding import ToyModel, catalogue

import genrec
from genrec.config import load_config
from genrec.decoding import INVALID, SIDTrie
from genrec.finetune import GRPOSettings, group_advantages, grpo_loss, kl_estimate, rewards, sample_ids
from genrec.finetune.grpo import GRPOTrainer
from genrec.finetune.rewards import Candidates, diversity, novelty, register_reward, relevance, reward, unseen, validity
from genrec.pipeline import train


def test_advantages_objective_and_kl_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    adv = group_advantages(rewards, eps=0.0 + 1e-12)
    assert adv[0].tolist() == pytest.approx([1, -1, -1, 1])  # mean 0.5, population std 0.5
    assert adv[1].abs().max() == 0  # equal rewards: no preference
    new, old = torch.log(torch.tensor([[0.6], [0.3]])), torch.log(torch.tensor([[0.4], [0.4]]))
    advantages = torch.tensor([1.0, -2.0])
    # ratios 1.5 and 0.75; clip 0.2: min(1.5, 1.2) * 1 = 1.2 and min(0.75 * -2, 0.8 * -2) = -1.6
    assert float(grpo_loss(new, old, new, advantages, clip=0.2, kl=0.0)) == pytest.approx(-(1.2 - 1.6) / 2)
    assert float(kl_estimate(new, new).abs().max()) == 0  # policy = reference: no penalty
    q, p = math.log(0.4), math.log(0.6)
    assert float(kl_estimate(torch.tensor([p]), torch.tensor([q]))) == pytest.approx(math.exp(q - p) - (q - p) - 1)
    with_kl = grpo_loss(new, old, old, advantages, clip=0.2, kl=0.5)
    assert float(with_kl) == pytest.approx(-(1.2 - 1.6) / 2 + 0.5 * float(kl_estimate(new, old).mean()))


def test_rewards_by_hand():
    popularity = torch.tensor([0, 0, 0, 3, 0, 1, 0, 0])
    c = Candidates(
        items=torch.tensor([[3, 5, INVALID, 7]]),
        codes=torch.tensor([[[1, 2, 0], [1, 3, 3], [1, 2, 9], [0, 2, 0]]]),
        log_probs=torch.tensor([[-1.0, -2.0, -3.0, -0.5]]),  # candidate 3 is best; 0, 1, 2 share first token 1
        targets=torch.tensor([3]),
        target_codes=torch.tensor([[1, 2, 0]]),
        seen=[np.array([5, 8])],
        popularity=popularity,
        partial=0.6,
    )
    assert relevance(c)[0].tolist() == pytest.approx([1, 0.2, 0.4, 0])
    assert validity(c).tolist() == [[1, 1, 0, 1]]
    assert unseen(c).tolist() == [[1, 0, 0, 1]]
    assert diversity(c)[0].tolist() == pytest.approx([0, -1 / 3, -2 / 3, 0])
    expected = [1 - math.log(4) / math.log(4), 1 - math.log(2) / math.log(4), 0.0, 1.0]
    assert novelty(c).tolist()[0] == pytest.approx(expected)
    assert reward({"validity": 0.5, "novelty": 2.0}, c)[0].tolist() == pytest.approx(
        [0.5 * v + 2 * n for v, n in zip([1, 1, 0, 1], expected)]
    )


def test_a_reward_is_one_decorated_function():
    def cheap(c: Candidates) -> torch.Tensor:
        return (c.items % 2 == 0).float()

    with pytest.raises(ValueError, match="unknown reward"):
        GRPOSettings(reward="cheap:1")
    register_reward(cheap)
    try:
        assert GRPOSettings(reward="cheap:1,relevance:1").reward == {"cheap": 1.0, "relevance": 1.0}
        c = Candidates(
            torch.tensor([[2, 3]]),
            torch.zeros(1, 2, 3),
            torch.zeros(1, 2),
            torch.tensor([2]),
            torch.zeros(1, 3),
            [np.array([1])],
            torch.ones(5),
        )
        assert reward({"cheap": 2.0}, c).tolist() == [[2.0, 0.0]]
    finally:
        del rewards.REWARDS["cheap"]


def test_sampling_follows_the_trie_renormalised_distribution():
    codes, sizes = catalogue(3, n_items=20, level_sizes=(3, 3, 4))
    trie = SIDTrie(codes, sizes)
    model = ToyModel(sizes, batch_size=1, seed=3)
    items, tokens = sample_ids(
        model.step, trie, 1, 4000, 1.0, True, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    assert (items >= 0).all() and (tokens[0].numpy() == codes[items[0].numpy()]).all()
    valid = {tuple(c) for c in codes.tolist()}
    prefixes = [{c[:level] for c in valid} for level in range(4)]
    expected = np.zeros(len(codes))
    for index, code in enumerate(map(tuple, codes.tolist())):
        p = 1.0
        for level in range(3):
            probs = model.log_probs(0, list(code[:level])).exp()
            allowed = [t for t in range(sizes[level]) if code[:level] + (t,) in prefixes[level + 1]]
            p *= float(probs[code[level]] / probs[allowed].sum())
        expected[index] = p
    observed = np.bincount(items[0].numpy(), minlength=len(codes)) / 4000
    assert np.abs(observed - expected).max() < 0.03 and expected.sum() == pytest.approx(1)


RUN = dict(
    **TINY_BACKBONE, batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3, epochs=2
)


def tiny_run(tmp_path, model="PSID", **extra):
    config = load_config(
        [],
        model=model,
        run_name="parent",
        cache_dir=str(tmp_path / "cache"),
        output_dir=str(tmp_path / "runs"),
        **TINY_SYNTHETIC,
        **RUN,
        **extra,
    )
    return genrec.load_run(train(config)[1], cache_dir=str(tmp_path / "cache"))


def test_a_rewarded_item_gains_probability(tmp_path):
    run = tiny_run(tmp_path)
    histories = [run.split.train.histories[r] for r in range(16)]
    favourite = 7
    before = run.model.path_log_probs(histories)[:, 0, favourite].mean()
    settings = GRPOSettings(reward="relevance:1", group=8, lr=3e-3, kl=0.0)
    trainer = GRPOTrainer(run, settings, tmp_path / "ft")
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        trainer.step(histories, np.full(len(histories), favourite), [h for h in histories], generator)
    after = run.model.path_log_probs(histories)[:, 0, favourite].mean()
    assert after > before + 0.5


def test_a_validity_reward_cuts_invalid_ids_of_unconstrained_decoding(tmp_path):
    from genrec.evaluation import Catalogue, evaluate

    run = tiny_run(tmp_path, constrained_decoding=False)
    users = run.split.valid.subset(np.arange(60))

    def invalid():
        return evaluate(run.model, users, Catalogue(run.interactions.n_items), 64, 8)["invalid@10"]

    before = invalid()
    trainer = GRPOTrainer(
        run, GRPOSettings(reward="validity:1", group=8, constrained=False, lr=3e-3, kl=0.0), tmp_path / "ft"
    )
    generator, train = torch.Generator().manual_seed(0), run.split.train
    for step in range(20):
        rows = np.arange(step * 16, step * 16 + 16) % len(train)
        histories, targets = train.batch(rows)
        trainer.step(histories, targets, [train.seen[r] for r in rows], generator)
    assert before > 0.2 and invalid() < before / 2


def test_finetune_command_writes_a_loadable_run_that_compare_lists(tmp_path, capsys):
    from test_compare import flags

    from genrec.cli import main

    common = ["--models=PSID", "--seeds=[3]", *flags(tmp_path)]
    assert main(["compare", *common]) == 0
    (parent,) = (tmp_path / "runs/compare/Synthetic").glob("PSID-seed3-*")
    out = tmp_path / "runs/finetune/parent-grpo"
    assert (
        main(
            [
                "finetune",
                f"--run={parent}",
                f"--cache_dir={tmp_path / 'cache'}",
                "--reward=relevance:1,unseen:0.2",
                "--group=4",
                "--steps_per_epoch=3",
                "--batch_size=8",
                "--epochs=2",
                f"--output={out}",
            ]
        )
        == 0
    )
    assert {"config.yaml", "best.pt", "finetune.json", "metrics.jsonl", "results.json", "test_ranks.npy"} <= {
        p.name for p in out.iterdir()
    }
    tuned = genrec.load_run(out, cache_dir=str(tmp_path / "cache"))  # a run like any other
    assert tuned.recommend([[tuned.interactions.item_ids[i] for i in tuned.split.test.histories[0]]], k=3)
    dpo = tmp_path / "runs/finetune/parent-dpo"
    schedule = ["--steps_per_epoch=3", "--batch_size=8", "--epochs=2", f"--cache_dir={tmp_path / 'cache'}"]
    assert main(["finetune", f"--run={parent}", "--method=dpo", "--negatives=2", *schedule, f"--output={dpo}"]) == 0
    assert json.loads((dpo / "finetune.json").read_text())["method"] == "dpo"
    assert len((dpo / "metrics.jsonl").read_text().splitlines()) >= 1
    capsys.readouterr()
    assert main(["compare", *common, f"--finetuned={out},{dpo}"]) == 0  # listed next to their parent, paired with it
    report = capsys.readouterr().out
    assert (
        "| PSID + GRPO(relevance:1,unseen:0.2) |" in report
        and "| PSID − PSID + GRPO(relevance:1,unseen:0.2) |" in report
        and "| PSID + DPO(beta=1,2 beam negatives) |" in report
    )
    assert (
        main(["finetune", f"--run={parent}", "--reward=clicks:1"]) == 2 and "unknown reward" in capsys.readouterr().err
    )
    assert main(["finetune", f"--run={parent}", "--method=dpo", "--group=4"]) == 2
    assert "--group is not a setting of --method=dpo" in capsys.readouterr().err
    assert main(["finetune", f"--run={parent}", "--method=ppo"]) == 2
    assert "--method must be one of grpo, dpo" in capsys.readouterr().err
