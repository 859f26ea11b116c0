"""cryptopipe.replay"""
