"""codeblue.sdk"""
