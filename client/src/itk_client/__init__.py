"""Client of the InfiniteTalk gateway's REST API.

    from itk_client import Client
    with Client("http://127.0.0.1:8080") as client:      # api_key defaults to $ITK_API_KEY
        job = client.submit("portrait.png", "speech.wav", width=480, height=832, preset="fast")
        job = client.wait(job.id, on_update=lambda j: print(j.status, j.progress))
        client.download(job.id, "out.mp4")

`AsyncClient` has the same methods as coroutines (and `events` as an async iterator).
"""

from itk_client.aio import AsyncClient
from itk_client.errors import GatewayError
from itk_client.models import ACTIVE_STATUSES, Event, Job, Piece
from itk_client.sync import Client

__all__ = ["ACTIVE_STATUSES", "AsyncClient", "Client", "Event", "GatewayError", "Job", "Piece"]
