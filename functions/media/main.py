"""The media family on Lambda (streaming): POST /v1/embeddings, /v1/images/generations, /v1/audio/speech.

Streaming, not Mangum: speech is relayed as the audio arrives, and an image answer (base64) can be
larger than the 6 MB a buffered Lambda response may be.
"""

from llm_gateway.aws import family_app


def app():
    return family_app(["media"])
