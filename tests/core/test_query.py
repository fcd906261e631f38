"""Model.query_models: ClearML's tag buckets, exclusion, archived, published, ordering, paging.

A few hundred models with random tags are queried through the backend and checked against
the reference semantics (TagFilter.matches evaluated in Python on every model).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

import modelbook
from modelbook import InputModel, Model
from modelbook.errors import ProjectNotFoundError, TagFilterError
from modelbook.records import ModelQuery
from modelbook.store.tagfilter import parse_tag_filter

TAGS = ["a", "b", "c", "d", "demo", "TF"]


@pytest.fixture
def population(registry: str) -> list[dict]:
    """240 models over two projects with random tags; some archived, some published."""
    rng = random.Random(7)
    made = []
    for i in range(240):
        tags = sorted(rng.sample(TAGS, rng.randint(0, 3)))
        project = "proj-1" if i % 3 else "proj-2"
        model = InputModel.import_model(
            weights_url=f"https://example.com/{i}.pt",
            name=f"model-{i % 40}",
            project=project,
            tags=tags,
            create_as_published=i % 5 == 0,
        )
        archived = i % 7 == 0
        if archived:
            model.archive()
        made.append(
            {
                "id": model.id,
                "tags": tags,
                "project": project,
                "name": f"model-{i % 40}",
                "published": i % 5 == 0,
                "archived": archived,
            }
        )
    return made


def _expected(
    population: list[dict], tags=None, project=None, name=None, published=False, archived=False
) -> list[str]:
    f = parse_tag_filter(tags) if tags else None
    chosen = [
        m
        for m in population
        if (f is None or f.matches(m["tags"]))
        and (project is None or m["project"] == project)
        and (name is None or m["name"] == name)
        and (not published or m["published"])
        and (archived or not m["archived"])
    ]
    return [m["id"] for m in reversed(chosen)]  # newest created first


FILTERS = [
    ["a"],
    ["a", "b"],
    ["demo", "-TF"],
    ["-a"],
    ["-a", "-b"],
    ["__$all", "a", "b"],
    ["__$all", "a", "b", "__$not", "c"],
    ["a", "b", "__$and", "c", "d"],
    ["__$any", "a", "__$not", "b"],
    ["__$all", "a", "__$nop", "-b"],
    ["__$all", "a", "-b"],  # after an operator "-b" is the literal tag "-b"
    [None],
    [None, "a"],
    ["__$or", "a", "__$and", "b", "c"],
]


def test_queries_match_server_semantics(population: list[dict]) -> None:
    """One population per backend (building it is most of the cost), every query on it."""
    for tags in FILTERS:
        got = [m.id for m in Model.query_models(tags=tags, include_archived=True)]
        assert got == _expected(population, tags=tags, archived=True), tags
    assert [m.id for m in Model.query_models(project_name="proj-2")] == _expected(
        population, project="proj-2"
    )
    got = [m.id for m in Model.query_models(project_name="proj-1", only_published=True)]
    assert got == _expected(population, project="proj-1", published=True)
    got = [m.id for m in Model.query_models(model_name="model-3", include_archived=True)]
    assert got == _expected(population, name="model-3", archived=True) and got
    assert all(not m.archived for m in Model.query_models(tags=["a"]))
    assert any(m.archived for m in Model.query_models(tags=["a"], include_archived=True))
    # newest first, and max_results
    got = Model.query_models(tags=["demo", "-TF"], max_results=5)
    assert [m.id for m in got] == _expected(population, tags=["demo", "-TF"])[:5]
    created = [m.created for m in got]
    assert created == sorted(created, reverse=True)
    assert Model.query_models(max_results=0) == []
    # filters that require one tag are driven from that tag's index rows (store/query.py):
    # the same models, pages and orders as the reference
    for tags in (["a"], ["__$all", "a", "b"], ["demo", "-TF"], ["__$all", "b", "__$not", "c"]):
        _check_driven(population, tags)


def _check_driven(population: list[dict], tags: list[str]) -> None:
    backend = modelbook.config.get_backend()
    expected = _expected(population, tags=tags)
    for size in (1, 3, 5):
        got = [m.id for m in Model.query_models(tags=tags, max_results=size)]
        assert got == expected[:size], (tags, size)
    shown = ModelQuery(tags=tags, system_tags=["-archived"])
    pages = [
        [m.id for m in backend.query_models(replace(shown, offset=start, limit=4))]
        for start in range(0, len(expected) + 4, 4)
    ]
    assert [i for page in pages for i in page] == expected, tags
    by_name = backend.query_models(replace(shown, order_by=["name"]))
    names = [m.name for m in by_name]
    assert names == sorted(names) and sorted(m.id for m in by_name) == sorted(expected), tags


def test_bucket_semantics_by_hand() -> None:
    f = parse_tag_filter(["a", "b", "__$and", "c", "d"])
    assert (f.any_of, f.all_of, f.global_and) == (["a", "b"], ["c", "d"], True)
    assert f.matches(["a", "c", "d"]) and not f.matches(["c", "d"]) and not f.matches(["a", "c"])
    f = parse_tag_filter(["__$any", "a", "__$not", "b"])
    assert f.matches(["a", "b"]) and f.matches([]) and not f.matches(["b"])
    assert parse_tag_filter(["__$all", "a", "-b"]).all_of == ["a", "-b"]


def test_name_is_exact_and_case_sensitive(registry: str) -> None:
    InputModel.import_model(weights_url="https://x/1.pt", name="resnet")
    InputModel.import_model(weights_url="https://x/2.pt", name="resnet50")
    InputModel.import_model(weights_url="https://x/3.pt", name="ResNet")
    assert [m.name for m in Model.query_models(model_name="resnet")] == ["resnet"]
    assert [m.name for m in Model.query_models(model_name="res.*")] == []


def test_metadata_filter(registry: str) -> None:
    a = InputModel.import_model(weights_url="https://x/1.pt", name="model-a")
    b = InputModel.import_model(weights_url="https://x/2.pt", name="model-b")
    a.set_metadata("dataset", "imagenet")
    b.set_metadata("dataset", "coco")
    assert [m.id for m in Model.query_models(metadata={"dataset": "coco"})] == [b.id]


def test_unknown_project_lists_existing(registry: str) -> None:
    modelbook.Task.init(project_name="vision", task_name="train")
    with pytest.raises(ProjectNotFoundError, match="'vision'"):
        Model.query_models(project_name="visoin")


@pytest.mark.parametrize(
    "tags, message",
    [
        (["__$xor", "a"], "unknown tag operator '__\\$xor'.*'__\\$all'"),
        (["a", "__$not"], "after '__\\$not'"),
        (["__$not", "__$all"], "after '__\\$not'"),
        (["-"], "exclude prefix"),
    ],
)
def test_bad_tag_filters_raise(registry: str, tags: list, message: str) -> None:
    with pytest.raises(TagFilterError, match=message):
        Model.query_models(tags=tags)
