"""cryptopipe.ingest"""
