"""cryptopipe.alerting"""
