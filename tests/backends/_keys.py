"""The throwaway vendor key the backend tests use, and the variable it travels in."""

VENDOR_KEY = "sk-test-wardgate-0123456789abcdef"
KEY_ENV = "WARDGATE_TEST_VENDOR_KEY"
