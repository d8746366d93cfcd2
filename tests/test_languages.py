"""Reason texts in the customer's language: the catalog's languages (complete or refused), Accept-Language
negotiation, Content-Language on every answer, one record whatever the language, the notice in English and
Simplified Chinese, and replay of decisions made with an older, English-only catalog version."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_store.catalog import ReasonCatalog
from model_store.errors import ContractError
from model_store.policy import Policy
from model_store.spec import FeatureSpec
from service.core.languages import best_language

CONFIG = Path(__file__).resolve().parents[1] / "config"
HAN = re.compile(r"[\u4e00-\u9fff]")


def _contract(lender: str) -> tuple[FeatureSpec, Policy]:
    spec = FeatureSpec.load(CONFIG / lender / "feature_spec.yaml")
    return spec, Policy.load(CONFIG / lender / "policy.yaml", spec)


# ---- the catalog ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lender", ["german_credit", "synthetic_lender"])
def test_the_example_catalogs_give_every_customer_text_in_english_and_simplified_chinese(lender: str) -> None:
    catalog = ReasonCatalog.load(CONFIG / lender / "reason_codes.yaml", *_contract(lender))
    assert catalog.languages == ("en", "zh-Hans") and catalog.default_language == "en"
    assert catalog.version.endswith("-1.1.0")
    codes = catalog.all_codes
    assert any(r.group is None for r in codes) and any(r.code.endswith("M") for r in codes) == (
        lender == "synthetic_lender"
    )
    for reason in codes:
        assert reason.text("en") == reason.customer_text and not HAN.search(reason.customer_text)
        assert HAN.search(reason.text("zh-Hans")), reason.code
    zh = catalog.customer_texts("zh-Hans")
    assert set(zh) == {r.code for r in codes} and len(set(zh.values())) >= len(codes) - 3


def _write_catalog(tmp_path: Path, change: Any) -> Path:
    data = yaml.safe_load((CONFIG / "german_credit" / "reason_codes.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "reason_codes.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _drop_zh(data: dict[str, Any]) -> None:
    del data["model_reasons"][6]["customer_text"]["zh-Hans"]


def _plain_rule_text(data: dict[str, Any]) -> None:
    data["rule_reasons"][1]["customer_text"] = data["rule_reasons"][1]["customer_text"]["en"]


def _empty_zh(data: dict[str, Any]) -> None:
    data["model_reasons"][0]["customer_text"]["zh-Hans"] = "  "


def _undeclared(data: dict[str, Any]) -> None:
    data["model_reasons"][2]["customer_text"]["fr"] = "Vos antécédents de remboursement"


def _declares_french(data: dict[str, Any]) -> None:
    data["languages"] = ["en", "zh-Hans", "fr"]


@pytest.mark.parametrize(
    ("change", "code", "language"),
    [
        (_drop_zh, "C07", "zh-Hans"),
        (_plain_rule_text, "R02", "zh-Hans"),
        (_empty_zh, "C01", "zh-Hans"),
        (_undeclared, "C03", "fr"),
        (_declares_french, "C01", "fr"),
    ],
)
def test_a_catalog_missing_a_translation_is_refused_naming_file_code_and_language(
    tmp_path: Path, change: Any, code: str, language: str
) -> None:
    path = _write_catalog(tmp_path, change)
    with pytest.raises(ContractError) as caught:
        ReasonCatalog.load(path, *_contract("german_credit"))
    message = str(caught.value)
    assert str(path) in message and f"code {code} " in message and language in message


def test_a_single_language_catalog_of_plain_strings_still_loads(tmp_path: Path) -> None:
    def english_only(data: dict[str, Any]) -> None:
        del data["languages"]
        for reason in [*data["model_reasons"], *data["rule_reasons"]]:
            reason["customer_text"] = reason["customer_text"]["en"]

    catalog = ReasonCatalog.load(_write_catalog(tmp_path, english_only), *_contract("german_credit"))
    assert catalog.languages == ("en",)
    assert catalog.for_group("employment").text("zh-Hans") == "Length of time in your present employment"
    with pytest.raises(ContractError, match=r"languages\[1\]"):
        ReasonCatalog.load(
            _write_catalog(tmp_path, lambda d: d.update(languages=["en", "zh Hans"])), *_contract("german_credit")
        )


def test_a_prohibited_basis_word_in_a_translation_is_refused(tmp_path: Path) -> None:
    def leak(data: dict[str, Any]) -> None:
        data["model_reasons"][13]["customer_text"]["zh-Hans"] = "您的 marital status"

    with pytest.raises(ContractError, match="prohibited-basis"):
        ReasonCatalog.load(_write_catalog(tmp_path, leak), *_contract("german_credit"))


# ---- choosing the language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh", "zh-Hans"),
        ("zh-CN", "zh-Hans"),
        ("zh-Hans", "zh-Hans"),
        ("zh-SG", "zh-Hans"),
        ("ZH-hans-cn", "zh-Hans"),
        ("zh-TW", "en"),  # Traditional script: not offered, so the default
        ("zh-Hant", "en"),
        ("fr", "en"),
        ("en-GB", "en"),
        ("fr, zh-CN;q=0.5, en;q=0.4", "zh-Hans"),
        ("en;q=0.4, zh;q=0.9", "zh-Hans"),
        ("zh-CN;q=0.8, en;q=0.9", "en"),
        ("zh;q=0, *", "en"),
        ("*", "en"),
        ("", "en"),
    ],
)
def test_accept_language_chooses_among_the_catalog_languages(api_app: Any, header: str, expected: str) -> None:
    with api_app.test_request_context("/", headers={"Accept-Language": header}):
        from flask import request

        ranges = [(v, float(q)) for v, q in request.accept_languages]
    assert best_language(ranges, ("en", "zh-Hans")) == expected


# ---- the API -------------------------------------------------------------------------------------------


def _catalog(app: Any) -> ReasonCatalog:
    from service.state import get_state

    return get_state(app).service.served_model().catalog


def _adverse_request(german_applications: list[Any], app: Any) -> dict[str, Any]:
    """A German application the tiny model declines (the notice needs a decline)."""
    client = app.test_client()
    for request_, _outcome in german_applications[:60]:
        body = client.post("/v1/decisions:batch", json={"applications": [request_]}).get_json()
        if body["items"][0]["decision"]["decision"] == "decline":
            return dict(request_)
    raise AssertionError("no decline among the first German applications")


@pytest.mark.parametrize(
    ("header", "language"), [("zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"), ("de-DE", "en"), (None, "en")]
)
def test_a_decision_answers_in_the_asked_language_and_says_so(
    api_app: Any, example_application: dict[str, Any], header: str | None, language: str
) -> None:
    headers = {} if header is None else {"Accept-Language": header}
    response = api_app.test_client().post(
        "/v1/decisions", json={**example_application, "application_id": "APP-LANG-1"}, headers=headers
    )
    assert response.status_code == 201
    assert response.headers["Content-Language"] == language
    assert "Accept-Language" in response.headers["Vary"]
    texts = _catalog(api_app).customer_texts(language)
    reasons = response.get_json()["reasons"]
    assert reasons and [r["customer_text"] for r in reasons] == [texts[r["code"]] for r in reasons]
    assert all(bool(HAN.search(r["customer_text"])) == (language == "zh-Hans") for r in reasons)


def test_one_record_whatever_the_language(api_app: Any, example_application: dict[str, Any]) -> None:
    client = api_app.test_client()
    body = {**example_application, "application_id": "APP-LANG-2"}
    key = {"Idempotency-Key": "lang-retry-1"}
    first = client.post("/v1/decisions", json=body, headers={**key, "Accept-Language": "zh-Hans"})
    retry = client.post("/v1/decisions", json=body, headers={**key, "Accept-Language": "en"})
    assert first.status_code == retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    zh, en = first.get_json(), retry.get_json()
    assert zh["decision_id"] == en["decision_id"]
    assert (first.headers["Content-Language"], retry.headers["Content-Language"]) == ("zh-Hans", "en")
    # everything but the customer texts is the same decision
    strip = [{k: v for k, v in r.items() if k != "customer_text"} for r in zh["reasons"]]
    assert strip == [{k: v for k, v in r.items() if k != "customer_text"} for r in en["reasons"]]
    assert {k: v for k, v in zh.items() if k != "reasons"} == {k: v for k, v in en.items() if k != "reasons"}
    catalog = _catalog(api_app)
    assert [r["customer_text"] for r in en["reasons"]] == [
        catalog.customer_texts("en")[r["code"]] for r in en["reasons"]
    ]
    # the record holds the default language's texts, and its hash does not depend on who asked in what language
    stored = {
        lang: client.get(f"/v1/decisions/{zh['decision_id']}", headers={"Accept-Language": lang})
        for lang in ("zh-CN", "en")
    }
    assert {lang: r.headers["Content-Language"] for lang, r in stored.items()} == {"zh-CN": "zh-Hans", "en": "en"}
    zh_record, en_record = (stored[lang].get_json() for lang in ("zh-CN", "en"))
    assert zh_record["record_hash"] == en_record["record_hash"] and zh_record["payload"] == en_record["payload"]
    assert zh_record["response"]["reasons"] == zh["reasons"] and en_record["response"]["reasons"] == en["reasons"]
    from service.state import get_state

    store = get_state(api_app).store
    assert store is not None and store.verify_chain().ok
    # the texts the record names (kept once by the store) are the default language's
    texts = store.reason_texts(zh_record["payload"]["model"]["reason_texts_sha256"])
    assert texts is not None
    assert [texts.texts[r["code"]][0] for r in zh_record["payload"]["reasons"]] == [
        r["customer_text"] for r in en["reasons"]
    ]


def test_a_batch_answers_in_the_asked_language(api_app: Any, german_applications: list[Any]) -> None:
    response = api_app.test_client().post(
        "/v1/decisions:batch",
        json={"applications": [r for r, _ in german_applications[:5]]},
        headers={"Accept-Language": "zh"},
    )
    assert response.status_code == 200 and response.headers["Content-Language"] == "zh-Hans"
    texts = _catalog(api_app).customer_texts("zh-Hans")
    for item in response.get_json()["items"]:
        assert [r["customer_text"] for r in item["decision"]["reasons"]] == [
            texts[r["code"]] for r in item["decision"]["reasons"]
        ]


def test_the_notice_in_simplified_chinese_and_in_english(api_app: Any, german_applications: list[Any]) -> None:
    client = api_app.test_client()
    request_ = _adverse_request(german_applications, api_app)
    declined = client.post("/v1/decisions", json={**request_, "application_id": "APP-LANG-NOTICE"}).get_json()
    path = f"/v1/decisions/{declined['decision_id']}/notice"
    zh_texts = _catalog(api_app).customer_texts("zh-Hans")
    adverse = [r for r in declined["reasons"] if r["adverse"]][:4]
    for how in ({"query_string": {"lang": "zh-Hans"}}, {"headers": {"Accept-Language": "zh-CN, en;q=0.5"}}):
        response = client.get(path, **how)  # type: ignore[arg-type]
        assert response.status_code == 200 and response.headers["Content-Language"] == "zh-Hans"
        body = response.get_json()
        assert body["language"] == "zh-Hans"
        assert [r["text"] for r in body["principal_reasons"]] == [zh_texts[r["code"]] for r in adverse]
        assert HAN.search(body["inquiries_note"])
    page = client.get(path, query_string={"lang": "zh", "format": "html"})
    assert page.status_code == 200 and page.headers["Content-Language"] == "zh-Hans"
    html = page.get_data(as_text=True)
    assert '<html lang="zh-Hans">' in html and "拒绝授信通知" in html and "平等信贷机会法" in html
    for reason in adverse:
        assert zh_texts[reason["code"]] in html
    english = client.get(path, query_string={"format": "html"}, headers={"Accept-Language": "fr"})
    assert english.headers["Content-Language"] == "en" and not HAN.search(english.get_data(as_text=True))
    assert {"Accept", "Accept-Language"} <= {v.strip() for v in english.headers["Vary"].split(",")}
    refused = client.get(path, query_string={"lang": "fr"})
    assert refused.status_code == 400 and refused.mimetype == "application/problem+json"
    assert [e["field"] for e in refused.get_json()["errors"]] == ["lang"]
    # both languages on one printable page: the asked one first, the other on a page of its own
    both = client.get(path, query_string={"format": "html", "bilingual": "true"}, headers={"Accept-Language": "zh"})
    assert both.status_code == 200 and both.headers["Content-Language"] == "zh-Hans, en"
    page = both.get_data(as_text=True)
    assert page.index("拒绝授信通知") < page.index('<article class="translation" lang="en">')
    assert page.index('<article class="translation" lang="en">') < page.index("Statement of credit denial")
    assert 'id="principal-reasons"' in page and 'id="principal-reasons-en"' in page
    assert "break-before: page" in page and english.get_data(as_text=True).count("<h1>") == 1
    english_texts = _catalog(api_app).customer_texts("en")
    assert all(english_texts[r["code"]] in page and zh_texts[r["code"]] in page for r in adverse)
    not_json = client.get(path, query_string={"bilingual": "true"})
    assert not_json.status_code == 400 and [e["field"] for e in not_json.get_json()["errors"]] == ["bilingual"]


def test_the_notice_has_its_wording_in_every_notice_language() -> None:
    from service.api.notice import PAGE_TEXTS
    from service.core.notice import NOTICE_LANGUAGES, NOTICE_TEXTS

    assert tuple(PAGE_TEXTS) == NOTICE_LANGUAGES == ("en", "zh-Hans") and tuple(NOTICE_TEXTS) == NOTICE_LANGUAGES
    for texts in (NOTICE_TEXTS["zh-Hans"], PAGE_TEXTS["zh-Hans"]):
        assert all(HAN.search(value) for value in vars(texts).values())


def test_replay_is_identical_in_every_language(api_app: Any, example_application: dict[str, Any]) -> None:
    client = api_app.test_client()
    decided = client.post(
        "/v1/decisions",
        json={**example_application, "application_id": "APP-LANG-3"},
        headers={"Accept-Language": "zh-Hans"},
    ).get_json()
    replay = client.post(f"/v1/decisions/{decided['decision_id']}/replay", headers={"Accept-Language": "zh-Hans"})
    assert replay.status_code == 200 and replay.get_json()["identical"] is True
    assert replay.headers["Content-Language"] == "en"  # compared as recorded


def _store_with_english_only_catalog(source: Path, target: Path, name: str, version: str) -> Any:
    """A model store holding a copy of ``name version`` with the catalog as it was before translations (1.0.0)."""
    from model_store.store import CATALOG_FILE, MANIFEST_FILE, ModelStore

    folder = source / name / version
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    manifest = json.loads(files.pop(MANIFEST_FILE))
    for key in ("files", "name", "version"):
        manifest.pop(key)
    data = yaml.safe_load(files[CATALOG_FILE])
    data["catalog_version"] = "german-credit-reasons-1.0.0"
    del data["languages"]
    for reason in [*data["model_reasons"], *data["rule_reasons"]]:
        reason["customer_text"] = reason["customer_text"]["en"]
    files[CATALOG_FILE] = yaml.safe_dump(data, sort_keys=False).encode()
    manifest["catalog_version"] = data["catalog_version"]
    store = ModelStore(target)
    store.write_version(name, version, files, manifest)
    store.promote(name, version, note="the version as decided with its first catalog")
    return store


def test_decisions_of_an_english_only_catalog_version_answer_in_english_and_replay_identically(
    api_make_app: Any, api_model_store: Path, german_applications: list[Any], tmp_path: Path
) -> None:
    from model_store.store import ModelStore

    champion = ModelStore(api_model_store).champion()
    assert champion is not None
    name, version = champion
    old = _store_with_english_only_catalog(api_model_store, tmp_path / "store", name, version)
    app = api_make_app(MODEL_STORE=str(old.root))
    client = app.test_client()
    assert _catalog(app).version == "german-credit-reasons-1.0.0"
    request_ = _adverse_request(german_applications, app)
    decided = client.post(
        "/v1/decisions", json={**request_, "application_id": "APP-OLD-1"}, headers={"Accept-Language": "zh-CN"}
    )
    assert decided.status_code == 201 and decided.headers["Content-Language"] == "en"
    body = decided.get_json()
    assert body["catalog_version"] == "german-credit-reasons-1.0.0"
    assert not any(HAN.search(r["customer_text"]) for r in body["reasons"])
    replay = client.post(f"/v1/decisions/{body['decision_id']}/replay")
    assert replay.get_json()["identical"] is True and replay.headers["Content-Language"] == "en"
    notice = client.get(f"/v1/decisions/{body['decision_id']}/notice", headers={"Accept-Language": "zh"})
    assert notice.status_code == 200 and notice.headers["Content-Language"] == "en"
    assert client.get(f"/v1/decisions/{body['decision_id']}/notice?lang=zh-Hans").status_code == 400
