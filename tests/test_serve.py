"""``genrec serve`` through a real HTTP client against a running server on 127.0.0.1 (a free port):
the same lists as the Python API under concurrent load, batched; removal; 4xx for bad requests."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

import genrec
from genrec.config import load_config
from genrec.pipeline import train
from genrec.serve import create_app

TINY = dict(
    **TINY_BACKBONE, batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3, epochs=2
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    config = load_config(
        [],
        model="PSID",
        run_name="psid",
        cache_dir=str(root / "cache"),
        output_dir=str(root / "runs"),
        **TINY_SYNTHETIC,
        **TINY,
    )
    directory = train(config)[1]
    run = genrec.load_run(directory, cache_dir=str(root / "cache"))
    app = create_app(run, max_batch=64, max_wait_ms=20)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded wait for start-up
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    reference = genrec.load_run(directory, cache_dir=str(root / "cache"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield client, reference, app
    server.should_exit = True
    thread.join(timeout=10)


def histories(run, users):
    return [[run.interactions.item_ids[i] for i in run.split.test.histories[u]] for u in users]


def test_concurrent_requests_get_the_python_api_lists_and_share_passes(served):
    client, run, app = served
    assert client.get("/health").json()["status"] == "ok"
    requests = [histories(run, [u, u + 1]) for u in range(0, 64, 2)]
    expected = [run.recommend(h, k=5) for h in requests]
    before = app.state.batcher.batches
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda h: client.post("/recommend", json={"histories": h, "k": 5}), requests))
    assert all(reply.status_code == 200 for reply in replies)
    for reply, lists in zip(replies, expected):
        got = reply.json()["recommendations"]
        assert [row["items"] for row in got] == [[item for item, _ in ranked] for ranked in lists]
        assert all(abs(a - b) < 1e-4 for row, ranked in zip(got, lists) for a, (_, b) in zip(row["scores"], ranked))
    assert app.state.batcher.batches - before < len(requests)  # concurrent requests shared decoding passes


def test_removed_items_are_never_served_until_restored(served):
    client, run, _ = served
    history = histories(run, [5])
    top = client.post("/recommend", json={"histories": history, "k": 3}).json()["recommendations"][0]["items"]
    assert client.delete(f"/items/{top[0]}").json() == {"removed": top[0]}
    assert client.get("/health").json()["removed"] == 1
    after = client.post("/recommend", json={"histories": history, "k": 3}).json()["recommendations"][0]["items"]
    assert top[0] not in after and after[:2] == top[1:]
    assert client.post(f"/items/{top[0]}/restore").status_code == 200
    assert client.post("/recommend", json={"histories": history, "k": 3}).json()["recommendations"][0]["items"] == top


@pytest.mark.parametrize(
    "body, field",
    [
        ({"histories": []}, "histories"),
        ({"histories": [["i00001"]], "k": 0}, "k"),
        ({"histories": [["i00001"]], "beam": 5}, "beam"),
        ({"history": ["i00001"]}, "histories"),
    ],
)
def test_bad_requests_are_422_naming_the_field(served, body, field):
    client, _, _ = served
    reply = client.post("/recommend", json=body)
    assert reply.status_code == 422 and field in [error["loc"][-1] for error in reply.json()["detail"]]


def test_unknown_ids_are_400_naming_them(served):
    client, _, _ = served
    reply = client.post("/recommend", json={"histories": [["nope"]]})
    assert reply.status_code == 400 and "'nope'" in reply.json()["detail"]


def test_malformed_json_and_unknown_items_are_4xx(served):
    client, _, _ = served
    reply = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert client.delete("/items/nope").status_code == 404
    assert client.get("/nowhere").status_code == 404


def test_diversity_over_http_is_the_python_apis(served):
    client, run, _ = served
    history = histories(run, [9, 10])
    for diversity in ({"prefix_cap": 1}, {"groups": 4, "penalty": 2.0}, {"mmr": 0.5}):
        reply = client.post("/recommend", json={"histories": history, "k": 5, "diversity": diversity})
        expected = run.recommend(history, k=5, diversity=genrec.Diversity(**diversity))
        assert reply.status_code == 200
        assert [row["items"] for row in reply.json()["recommendations"]] == [[item for item, _ in r] for r in expected]
    reply = client.post("/recommend", json={"histories": history, "diversity": {"mmr": 2}})
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"][-1] == "mmr"
    reply = client.post("/recommend", json={"histories": history, "num_beams": 4, "diversity": {"groups": 20}})
    assert reply.status_code == 400 and "groups" in reply.json()["detail"]


def test_one_bad_request_does_not_fail_its_batch_neighbours(served):
    client, run, _ = served
    good = {"histories": histories(run, [7]), "k": 3}
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(lambda body: client.post("/recommend", json=body), [good, {"histories": [["nope"]]}] * 4)
        )
    assert [reply.status_code for reply in replies] == [200, 400] * 4


def test_an_item_added_over_http_is_recommendable_at_once(served):
    client, run, _ = served
    text = dict(run.interactions.item_text[9])
    reply = client.post("/items", json={"items": [{"id": "fresh-1", **text}]})
    assert reply.status_code == 200 and reply.json()["added"][0]["id"] == "fresh-1"
    body = {"histories": histories(run, [2]), "k": 1, "allow": ["fresh-1"]}
    assert client.post("/recommend", json=body).json()["recommendations"][0]["items"] == ["fresh-1"]
    assert client.post("/items", json={"items": [{"id": "fresh-1", **text}]}).status_code == 400  # ids are unique
    assert client.post("/items", json={"items": [{"title": 3}]}).status_code == 422
