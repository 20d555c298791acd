using System.Diagnostics.CodeAnalysis;
using System.Reflection;

namespace FastWeights.Engine.Tests;

/// <summary>Keeps a backend's switches (every public read-write property) and puts them back on
/// Dispose. The tests share one backend, so a test may change any switch inside
/// <c>using var settings = BackendSettings.Keep(backend);</c> and the backend is left as it was found
/// however the test ends.</summary>
internal sealed class BackendSettings : IDisposable
{
    private readonly object _backend;
    private readonly (PropertyInfo Property, object? Value)[] _kept;

    private BackendSettings(object backend, (PropertyInfo, object?)[] kept)
    {
        _backend = backend;
        _kept = kept;
    }

    // The type argument, not backend.GetType(): the trimmer keeps the properties of what the annotation names.
    // An interface or base type would name only its own properties and leave the backend's switches unkept.
    public static BackendSettings Keep<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicProperties)] T>(T backend) where T : class =>
        typeof(T) != backend.GetType()
            ? throw new ArgumentException($"BackendSettings.Keep: pass the backend as its own type ({backend.GetType().Name}), not as {typeof(T).Name}", nameof(backend))
            : new(backend, typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .Where(p => p.GetGetMethod() is not null && p.GetSetMethod() is not null && p.GetIndexParameters().Length == 0)
                .Select(p => (p, p.GetValue(backend)))
                .ToArray());

    public void Dispose()
    {
        foreach (var (property, value) in _kept)
            if (!Equals(property.GetValue(_backend), value))
                property.SetValue(_backend, value);
    }
}
