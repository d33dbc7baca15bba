"""hoard.proxy"""
