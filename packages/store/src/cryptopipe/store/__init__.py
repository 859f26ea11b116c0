"""cryptopipe.store"""
