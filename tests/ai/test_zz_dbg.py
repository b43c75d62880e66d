from django.db import connection
from django.test.utils import CaptureQueriesContext

def test_dbg(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        client.post("/api/documents/", {"title": "Only", "content": "The only document about gardening."}, format="json")
    with CaptureQueriesContext(connection) as one:
        r = client.post("/api/search/", {"query": "plants"}, format="json")
        print("inside", len(connection.queries_log), one.initial_queries)
    print("after", one.initial_queries, one.final_queries, len(connection.queries_log), connection.queries_log.maxlen)
    with CaptureQueriesContext(connection) as two:
        r = client.post("/api/search/", {"query": "plants"}, format="json")
    print("two", two.initial_queries, two.final_queries)
