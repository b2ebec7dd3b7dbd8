"""``genrec serve`` through a real HTTP client against a running server on 127.0.0.1 (a free port):
the same lists as the Python API under concurrent load, batched; removal; 4xx for bad requests. The
server's tests run twice: decoding in a thread of the server (:class:`MicroBatcher`) and in a
process of its own (:class:`BatcherProcess`, what ``genrec serve`` starts)."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

import genrec
from genrec.batcher import MicroBatcher
from genrec.batcher_process import BatcherProcess
from genrec.config import load_config
from genrec.errors import GenrecError
from genrec.pipeline import train
from genrec.serve import RecommendRequest, create_app

TINY = dict(
    **TINY_BACKBONE, batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3, epochs=2
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
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
    return train(config)[1], str(root / "cache")


@pytest.fixture(scope="module")
def reference(trained):
    directory, cache = trained
    return genrec.load_run(directory, cache_dir=cache)


@pytest.fixture(scope="module", params=["thread", "process"])
def served(request, trained, tmp_path_factory):
    directory, cache = trained
    journal = tmp_path_factory.mktemp("journal") / "changes.jsonl"
    if request.param == "thread":
        batcher = MicroBatcher(
            genrec.load_run(directory, cache_dir=cache), max_batch=64, max_wait_ms=20, journal=journal
        )
    else:
        batcher = BatcherProcess(directory, {"cache_dir": cache}, max_batch=64, max_wait_ms=20, journal=journal)
    app = create_app(batcher)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded wait for start-up
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    reference = genrec.load_run(directory, cache_dir=cache)
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
    before = client.get("/health").json()["decoding_passes"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda h: client.post("/recommend", json={"histories": h, "k": 5}), requests))
    assert all(reply.status_code == 200 for reply in replies)
    for reply, lists in zip(replies, expected):
        got = reply.json()["recommendations"]
        assert [row["items"] for row in got] == [[item for item, _ in ranked] for ranked in lists]
        assert all(abs(a - b) < 1e-4 for row, ranked in zip(got, lists) for a, (_, b) in zip(row["scores"], ranked))
    health = client.get("/health").json()
    assert health["decoding_passes"] - before < len(requests)  # concurrent requests shared decoding passes
    assert health["torch_threads"] >= 1 and health["model"] == "PSID" and health["dataset"] == "Synthetic"


def test_requests_queued_during_a_pass_share_the_next_one():
    """``max_wait_ms=0`` (the default): a lone request is decoded at once, and the requests that
    arrive while a pass runs go together into the next pass."""

    class SlowRun:  # records each pass's histories; the first pass waits until released
        label = "slow"

        class interactions:  # noqa: N801 - stands in for Run.interactions
            name = "none"

        def __init__(self):
            self.passes, self.entered, self.release = [], threading.Event(), threading.Event()

        def recommend(self, histories, **options):
            self.entered.set()
            if not self.passes:
                self.release.wait(timeout=30)
            self.passes.append(len(histories))
            return [[(history[0], 0.0)] for history in histories]

    run = SlowRun()
    batcher = MicroBatcher(run)
    try:
        first = batcher.submit(RecommendRequest(histories=[["a"]]))
        assert run.entered.wait(timeout=30)  # the lone request is being decoded, with no company
        queued = [batcher.submit(RecommendRequest(histories=[[name]])) for name in "bcd"]
        run.release.set()
        assert first.result(timeout=30) == [[("a", 0.0)]]
        assert [done.result(timeout=30) for done in queued] == [[[(name, 0.0)]] for name in "bcd"]
        assert run.passes == [1, 3]
    finally:
        batcher.close()


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


def test_bodies_that_json_cannot_echo_are_422_and_never_echoed(served):
    client, run, _ = served
    body = b'{"histories": [["%s"]], "k": NaN}' % run.interactions.item_ids[0].encode()
    reply = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "k"]
    for value in (b"Infinity", b"-Infinity", b"1e999"):
        body = b'{"histories": [["x"]], "diversity": {"penalty": %s}}' % value
        reply = client.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"][-1] == "penalty"
    huge = "y" * 100_000
    reply = client.post("/recommend", json={"histories": [[huge]], "k": huge})
    assert reply.status_code == 422 and huge not in reply.text and "input" not in reply.json()["detail"][0]
    reply = client.post("/recommend", json={"histories": [[huge]]})  # an unknown id: the message is cut
    assert reply.status_code == 400 and len(reply.json()["detail"]) <= 500


def test_bodies_over_the_limit_are_413_declared_or_streamed(served):
    from genrec.serve import MAX_BODY_BYTES

    client, _, _ = served
    body = b'{"histories": [["' + b"z" * MAX_BODY_BYTES + b'"]]}'
    assert client.post("/recommend", content=body, headers={"content-type": "application/json"}).status_code == 413
    chunks = (body[i : i + 2**20] for i in range(0, len(body), 2**20))  # no Content-Length: chunked
    reply = client.post("/recommend", content=chunks, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "request body over" in reply.json()["detail"]
    assert client.get("/health").status_code == 200  # the server is still there


def test_restrictions_that_match_nothing_are_400_naming_them(served):
    client, run, _ = served
    history = histories(run, [4])
    category = sorted(set().union(*run.item_categories))[0]
    reply = client.post("/recommend", json={"histories": history, "category": category.upper() + "s"})
    assert reply.status_code == 400 and "no item of Synthetic is in category" in reply.json()["detail"]
    allow = run.interactions.item_ids[:2]
    reply = client.post("/recommend", json={"histories": history, "allow": allow, "deny": allow})
    assert reply.status_code == 400 and "no item is left to recommend" in reply.json()["detail"]


def test_added_items_need_text_and_ids_that_round_trip_and_any_id_is_addressable(served):
    client, run, _ = served
    text = dict(run.interactions.item_text[11])
    reply = client.post("/items", json={"items": [{"id": "blank-1", "title": "  "}]})
    assert reply.status_code == 400 and "have no text" in reply.json()["detail"]
    reply = client.post("/items", json={"items": [{"id": "n-1", "name": "a microscope"}]})
    assert reply.status_code == 400 and "unknown item field(s) name" in reply.json()["detail"]
    for bad in (" padded", "tab\there"):
        assert client.post("/items", json={"items": [{"id": bad, **text}]}).status_code == 400
    odd = "shop/42?colour=red#1 %"
    assert client.post("/items", json={"items": [{"id": odd, **text}]}).status_code == 200
    quoted = httpx.URL(f"/items/{odd.replace('%', '%25').replace('?', '%3F').replace('#', '%23')}")
    assert client.delete(quoted).json() == {"removed": odd}
    assert client.post(f"{quoted}/restore").json() == {"restored": odd}


def test_an_api_key_guards_catalogue_changes_and_without_one_beyond_loopback_they_are_off(reference):
    from fastapi.testclient import TestClient

    run = reference
    item = run.interactions.item_ids[3]
    body = {"histories": histories(run, [1]), "k": 2}
    key = "s3cret-key-of-twenty-chars"
    with TestClient(create_app(MicroBatcher(run), api_key=key)) as guarded:
        assert guarded.post("/recommend", json=body).status_code == 200  # reading stays open
        reply = guarded.delete(f"/items/{item}")
        assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
        assert guarded.delete(f"/items/{item}", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.delete(f"/items/{item}", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert guarded.post(f"/items/{item}/restore", headers={"X-API-Key": key}).status_code == 200
    with TestClient(create_app(MicroBatcher(run), api_key=key, auth="all")) as closed:
        assert closed.post("/recommend", json=body).status_code == 401
        assert closed.post("/recommend", json=body, headers={"X-API-Key": key}).status_code == 200
        assert closed.get("/health").status_code == 200
    with TestClient(create_app(MicroBatcher(run), open_changes=False)) as exposed:
        assert exposed.post("/recommend", json=body).status_code == 200
        reply = exposed.delete(f"/items/{item}")
        assert reply.status_code == 403 and "without an API key" in reply.json()["detail"]
    with pytest.raises(GenrecError, match="needs an api_key"):
        create_app(MicroBatcher(run), auth="all")


def test_catalogue_changes_outlive_a_restart_through_the_journal(reference, tmp_path):
    """What one server added and removed, a restarted one serves (the same semantic IDs); a change the
    run refused is not recorded, and a journal that does not fit the run is an error naming its line."""
    from fastapi.testclient import TestClient

    cache, journal = reference.config.cache_dir, tmp_path / "changes.jsonl"
    text, removed = dict(reference.interactions.item_text[11]), reference.interactions.item_ids[3]
    with TestClient(
        create_app(MicroBatcher(genrec.load_run(reference.directory, cache_dir=cache), journal=journal))
    ) as client:
        (added,) = client.post("/items", json={"items": [{"id": "kept-1", **text}]}).json()["added"]
        assert client.delete(f"/items/{removed}").status_code == 200
        assert client.post("/items", json={"items": [{"id": "blank", "title": " "}]}).status_code == 400
    assert [json.loads(line)["action"] for line in journal.read_text().splitlines()] == ["add_items", "remove"]
    restarted = genrec.load_run(reference.directory, cache_dir=cache)
    with TestClient(create_app(MicroBatcher(restarted, journal=journal))) as client:
        assert client.get("/health").json()["removed"] == 1
        body = {"histories": histories(reference, [2]), "k": 1, "allow": ["kept-1"]}
        assert client.post("/recommend", json=body).json()["recommendations"][0]["items"] == ["kept-1"]
        assert client.post("/recommend", json={**body, "allow": [removed]}).status_code == 400  # still removed
    assert restarted.semantic_ids.codes[restarted.item_index["kept-1"]].tolist() == added["semantic_id"]
    journal.write_text('{"action": "remove", "items": ["no-such-item"]}\n')
    with pytest.raises(GenrecError, match=r"changes.jsonl:1: cannot replay"):
        MicroBatcher(genrec.load_run(reference.directory, cache_dir=cache), journal=journal)


def test_the_decoding_process_reports_load_errors_and_its_end(trained):
    """A run the child cannot load is the child's error, raised where the server starts; a child that
    dies (killed, out of memory) makes waiting and later requests 503s, not hangs."""
    from fastapi.testclient import TestClient

    directory, cache = trained
    with pytest.raises(GenrecError, match="no_such_key"):
        BatcherProcess(directory, {"cache_dir": cache, "no_such_key": 1})
    batcher = BatcherProcess(directory, {"cache_dir": cache})
    with TestClient(create_app(batcher)) as client:
        assert client.get("/health").json()["dataset"] == "Synthetic"
        batcher.process.kill()
        batcher.reader.join(timeout=30)
        reply = client.post("/recommend", json={"histories": [["i00001"]]})
        assert reply.status_code == 503 and "decoding process has ended" in reply.json()["detail"]
        assert client.get("/health").status_code == 503
