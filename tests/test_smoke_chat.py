import httpx


def test_mock_chat_answers(gateway):
    key = gateway.key()
    r = httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("This is a mock response")
