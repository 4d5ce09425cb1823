"""``recog-serve``: live recognition in the browser. An ASGI app (starlette, run by
uvicorn; the optional extra ``recog[serve]``) with a JSON API over ``recog.inference`` and
one static page: a writing pad for an ink model, a microphone and file drop for a speech
model."""
