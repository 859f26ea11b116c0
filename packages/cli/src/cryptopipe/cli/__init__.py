"""cryptopipe.cli"""
