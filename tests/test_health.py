import httpx
import pytest


@pytest.mark.django_db(transaction=True)
def test_healthz_reports_every_service_over_real_http(live_server, celery_worker_process):
    response = httpx.get(f"{live_server.url}/healthz", timeout=10)
    body = response.json()
    assert response.status_code == 200, body
    assert body["database"]["ok"] and body["database"]["vector_extension"].startswith("0.8")
    assert body["broker"]["ok"]
    assert body["workers"]["count"] >= 1


def test_openapi_schema_is_served(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi" in response.content


@pytest.mark.django_db
def test_api_docs_page_uses_no_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
