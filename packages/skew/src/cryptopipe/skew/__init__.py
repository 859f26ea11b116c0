"""cryptopipe.skew"""
