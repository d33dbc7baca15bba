"""hoard.cli"""
