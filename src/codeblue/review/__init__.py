"""codeblue.review"""
