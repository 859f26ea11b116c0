"""cryptopipe.infra"""
