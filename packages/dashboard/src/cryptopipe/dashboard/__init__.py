"""cryptopipe.dashboard"""
